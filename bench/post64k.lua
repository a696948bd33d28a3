-- wrk script: every request is a POST of a 64 KiB body (wrk adds the
-- Content-Length header itself).
wrk.method = "POST"
wrk.body = string.rep("a", 65536)
wrk.headers["Content-Type"] = "application/octet-stream"
