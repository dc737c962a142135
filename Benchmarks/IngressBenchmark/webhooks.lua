-- wrk script for the ingress benchmark: sends pre-signed 8x8 webhooks, each exactly once.
-- Arguments (after --): requests-folder path interval-ms
--   requests-folder holds requests-<thread>.tsv, one pre-signed webhook per line:
--   event-id TAB transmission-time TAB signature TAB body
--   interval-ms > 0 paces each thread on a fixed schedule (one request every interval-ms),
--   independent of response times, for the fixed-rate latency runs; 0 sends as fast as possible.
local ffi = require("ffi")
ffi.cdef[[
  typedef struct { long tv_sec; long tv_usec; } timeval;
  int gettimeofday(timeval *tv, void *tz);
]]
local function now_ms()
  local tv = ffi.new("timeval")
  ffi.C.gettimeofday(tv, nil)
  return tonumber(tv.tv_sec) * 1000 + tonumber(tv.tv_usec) / 1000
end

local threads = {}
local next_id = 0

function setup(thread)
  next_id = next_id + 1
  thread:set("id", next_id)
  table.insert(threads, thread)
end

function init(args)
  local folder, path = args[1], args[2]
  interval = tonumber(args[3] or "0")
  lines = {}
  for line in io.lines(folder .. "/requests-" .. id .. ".tsv") do lines[#lines + 1] = line end
  target = path
  index = 0
  wrapped = 0
  started = nil
  scheduled = 0
end

function request()
  index = index + 1
  if index > #lines then index = 1; wrapped = wrapped + 1 end
  local eid, tt, sig, body = lines[index]:match("^([^\t]*)\t([^\t]*)\t([^\t]*)\t(.*)$")
  return wrk.format("POST", target, {
    ["Content-Type"] = "application/json",
    ["x-8x8-tenant-id"] = "bench-tenant",
    ["x-8x8-customer-id"] = "bench-customer",
    ["x-8x8-event-id"] = eid,
    ["x-8x8-retry"] = "0",
    ["x-8x8-transmission-time"] = tt,
    ["x-8x8-signature"] = sig,
  }, body)
end

function delay()
  if interval <= 0 then return 0 end
  local now = now_ms()
  if not started then started = now end
  -- Each call reserves the thread's next slot, so connections waiting at the same time do not
  -- share one: the thread sends one request every `interval` ms whatever the response times.
  local due = started + scheduled * interval
  scheduled = scheduled + 1
  local wait = due - now
  if wait < 0 then return 0 end
  return wait
end

function done(summary, latency, requests)
  local total = 0
  for _, thread in ipairs(threads) do total = total + thread:get("wrapped") end
  io.write(string.format("wrapped %d\n", total))
end
