"""Video for the Command Center over connections the node opens itself.

- `live`: a camera's stream pushed, stream-copied, to the city's media server for a
  limited time (`uplink.live`);
- `fetch`: a recorded range exported and uploaded by HTTP PUT to a URL the Command Center
  gives (an S3 presigned URL), one at a time, queued durably (`uplink.fetch`);
- one bandwidth cap shared by both, live first (`uplink.bandwidth`);
- upload and media URLs checked before use (`uplink.targets`).

The package never imports `firmware`: the wiring (`firmware/wiring/uplink.py`) hands it
callbacks (camera streams, export, protect/release, events, retained state).
See docs/uplink.md.
"""
