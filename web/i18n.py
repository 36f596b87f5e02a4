"""The page's words in Bahasa Indonesia and English, chosen from Accept-Language."""

from __future__ import annotations

LANGS = ("id", "en")

STRINGS: dict[str, dict[str, str]] = {
    "en": {
        "title": "Ronda", "login": "Log in", "logout": "Log out", "user": "Name",
        "password": "Password", "bad_login": "Wrong name or password.",
        "throttled": "Too many attempts. Try again in {s} s.",
        "no_users": "No users yet. On the node, run: ronda users add NAME --role operator",
        "overview": "Overview", "live": "Live", "recordings": "Recordings",
        "events": "Events", "alarm": "Alarm", "camera": "Camera", "state": "State",
        "days": "days of footage", "cc": "Command Center", "connected": "connected",
        "disconnected": "not connected", "outbox": "waiting to send", "node": "Node",
        "temperature": "Temperature", "undervoltage": "Power", "disk": "Disk",
        "uptime": "Up for", "online": "online", "offline": "offline", "degraded": "degraded",
        "starting": "starting", "idle": "quiet", "alarm_on": "ALARM", "ack": "Acknowledge",
        "test_siren": "Test the siren", "confirm_test": "Sound the siren rhythm \"{p}\" now?",
        "outputs": "Outputs", "on": "on", "off": "off", "day": "Day", "play": "Play",
        "download": "Download", "from": "From", "to": "To", "speed": "Speed",
        "preparing": "Preparing download", "no_footage": "No footage here.",
        "storage_missing": "Recordings cannot be read now", "viewers_full":
        "Too many people are watching live. Try again later.",
        "h265_note": "This camera sends H.265, which phone browsers cannot play live: "
                     "showing a picture every few seconds.",
        "all": "All", "type": "Type", "open": "Open footage", "none": "Nothing yet.",
        "role_needed": "Only an operator can do this.", "ok": "OK", "error": "Error",
        "ok_power": "OK", "loading": "Loading", "gap": "no footage",
        "filter": "Filter", "seek_hint": "Tap the bar to play from that moment.",
        "stream_error": "The live picture stopped; retrying.",
    },
    "id": {
        "title": "Ronda", "login": "Masuk", "logout": "Keluar", "user": "Nama",
        "password": "Kata sandi", "bad_login": "Nama atau kata sandi salah.",
        "throttled": "Terlalu banyak percobaan. Coba lagi dalam {s} detik.",
        "no_users": "Belum ada pengguna. Di node, jalankan: ronda users add NAMA --role operator",
        "overview": "Ringkasan", "live": "Langsung", "recordings": "Rekaman",
        "events": "Kejadian", "alarm": "Alarm", "camera": "Kamera", "state": "Status",
        "days": "hari rekaman", "cc": "Pusat Komando", "connected": "terhubung",
        "disconnected": "tidak terhubung", "outbox": "menunggu dikirim", "node": "Node",
        "temperature": "Suhu", "undervoltage": "Daya", "disk": "Disk",
        "uptime": "Menyala selama", "online": "aktif", "offline": "mati",
        "degraded": "terganggu", "starting": "memulai", "idle": "tenang",
        "alarm_on": "ALARM", "ack": "Konfirmasi", "test_siren": "Uji sirene",
        "confirm_test": "Bunyikan irama sirene \"{p}\" sekarang?", "outputs": "Keluaran",
        "on": "nyala", "off": "mati", "day": "Hari", "play": "Putar", "download": "Unduh",
        "from": "Dari", "to": "Sampai", "speed": "Kecepatan",
        "preparing": "Menyiapkan unduhan", "no_footage": "Tidak ada rekaman di sini.",
        "storage_missing": "Rekaman tidak dapat dibaca sekarang", "viewers_full":
        "Terlalu banyak yang menonton langsung. Coba lagi nanti.",
        "h265_note": "Kamera ini mengirim H.265, yang tidak bisa diputar langsung oleh "
                     "browser ponsel: menampilkan gambar setiap beberapa detik.",
        "all": "Semua", "type": "Jenis", "open": "Buka rekaman", "none": "Belum ada.",
        "role_needed": "Hanya operator yang boleh.", "ok": "OK", "error": "Galat",
        "ok_power": "OK", "loading": "Memuat", "gap": "tidak ada rekaman",
        "filter": "Saring", "seek_hint": "Ketuk bilah untuk memutar dari saat itu.",
        "stream_error": "Gambar langsung berhenti; mencoba lagi.",
    },
}


def pick(accept_language: str | None) -> str:
    """The first supported language in an Accept-Language header (q-values honoured);
    Bahasa Indonesia when nothing matches (the people at the post)."""
    choices: list[tuple[float, int, str]] = []
    for i, part in enumerate((accept_language or "").split(",")):
        tag, _, params = part.strip().partition(";")
        q = 1.0
        if params.strip().startswith("q="):
            try:
                q = float(params.strip()[2:])
            except ValueError:
                q = 0.0
        if q > 0:  # q=0: "not this one"
            choices.append((-q, i, tag.strip().lower().split("-")[0]))
    for _, _, lang in sorted(choices):
        if lang in LANGS:
            return lang
    return "id"


def text(lang: str, key: str, **values: object) -> str:
    return STRINGS.get(lang, STRINGS["en"]).get(key, key).format(**values)
