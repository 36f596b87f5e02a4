// A second, independent signer of Ronda commands: RFC 8785 (JCS) in a few lines of
// JavaScript (JCS *is* ECMAScript's JSON.stringify with sorted keys) + Node's Ed25519.
// stdin: {"key_pem": PKCS#8 PEM, "node": id, "cmd": {id, ts, action, args}, "values": [...]}
// stdout: {"payload": signed command, "canonical": [base64 of jcs(v) for v in values]}
const crypto = require("crypto");

function jcs(v) {
  if (v === null || typeof v !== "object") return JSON.stringify(v);
  if (Array.isArray(v)) return "[" + v.map(jcs).join(",") + "]";
  return "{" + Object.keys(v).sort()  // UTF-16 code unit order, as RFC 8785 says
    .map((k) => JSON.stringify(k) + ":" + jcs(v[k])).join(",") + "}";
}

let input = "";
process.stdin.on("data", (d) => (input += d));
process.stdin.on("end", () => {
  const req = JSON.parse(input);
  const c = req.cmd;
  const signed = Buffer.concat([
    Buffer.from("ronda-cmd-v1\n"),
    Buffer.from(jcs({ action: c.action, args: c.args, id: c.id, node: req.node, ts: c.ts }),
      "utf8"),
  ]);
  const key = crypto.createPrivateKey(req.key_pem);
  const sig = crypto.sign(null, signed, key).toString("base64");
  process.stdout.write(JSON.stringify({
    payload: { id: c.id, ts: c.ts, action: c.action, args: c.args, sig },
    signed: signed.toString("base64"),
    canonical: (req.values || []).map((v) => Buffer.from(jcs(v), "utf8").toString("base64")),
  }));
});
