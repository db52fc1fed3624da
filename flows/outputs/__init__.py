"""VimQu outputs: the media engines behind seed 003's output types.

Each engine is a step (a coarse Prefect task) that takes a local, already fetched and probed
input, the output's ``type_specific_config`` (validated by ``flows.outputs.config``) and an
output directory, writes its files there and returns a typed result listing them (paths
relative to that directory) with what was made:

- ``thumbnails.make_thumbnails``: still frames at times / an interval / a count, optionally a
  sprite sheet with a WebVTT index (``thumbnail``).
- ``video.encode_output``: one file, mp4 (+faststart) or webm, h264/h265/vp9/av1 (``video``).
- ``package.package_streams``: a ladder of H.264 rungs encoded once to CMAF segments, with the
  HLS playlists and/or the DASH MPD written over the same segments (``hls``, ``dash``).
- ``ladder``: the built-in ladder and the rung selection (never upscale).

Uploading the files to the output's storage is the VimQu flow's business, not the engines'.
``config`` and ``ladder`` import nothing but pydantic, so the API can validate a request with
them.
"""
