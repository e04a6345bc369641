-- wrk script for bench/ingest.py: Alertmanager webhook v4 notifications, generated here.
--
--   wrk -t T -c C -d D -s bench/wrk/ingest.lua http://127.0.0.1:PORT/api/v1/alerts -- \
--       prefix pool per groups fresh limit nthreads base_epoch salt
--
-- Notification n (per thread: n = tid, tid + nthreads, ...) fills "slot" n % (pool / per)
-- with `per` alerts; a slot's alerts keep their labels (so their fingerprints) forever.
-- fresh=1: each pass over the slots is a new episode (startsAt + pass seconds), so every
-- alert is a new row; fresh=0: every pass re-delivers the same episodes (upserts).
-- limit>0: send exactly `limit` notifications in all, then each thread stops itself
-- (use one connection per thread for an exact count). The token comes from BENCH_TOKEN.
-- done() prints one line "BENCH_JSON {...}" with counts, statuses and latency percentiles.

local ffi = require("ffi")
ffi.cdef[[
typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
int clock_gettime(int clk_id, bench_timespec *tp);
]]
local ts = ffi.new("bench_timespec")
local function monotonic()
  ffi.C.clock_gettime(1, ts) -- CLOCK_MONOTONIC
  return tonumber(ts.tv_sec) + tonumber(ts.tv_nsec) * 1e-9
end

local threads = {}

function setup(thread)
  thread:set("tid", #threads)
  table.insert(threads, thread)
end

local prefix, pool, per, groups, fresh, limit, nthreads, base, salt
local slots, next_n, mine, responses, dry_call_pending
s2xx, s4xx, s5xx, sother, first_t, last_t = 0, 0, 0, 0, 0, 0

function init(args)
  prefix = args[1]
  pool, per, groups = tonumber(args[2]), tonumber(args[3]), tonumber(args[4])
  fresh, limit, nthreads, base = args[5] == "1", tonumber(args[6]), tonumber(args[7]),
    tonumber(args[8])
  salt = tonumber(args[9]) -- first half of every fingerprint: one value per scenario
  slots = pool / per
  next_n = tid
  responses = 0
  -- wrk 4.1 calls request() once on thread 0 before starting, to verify the script,
  -- and throws the result away: that call must not use up a notification number.
  dry_call_pending = (tid == 0)
  mine = -1
  if limit > 0 then
    mine = 0
    for n = tid, limit - 1, nthreads do mine = mine + 1 end
  end
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
  wrk.headers["Authorization"] = "Bearer " .. (os.getenv("BENCH_TOKEN") or "")
end

local function iso(epoch)
  return os.date("!%Y-%m-%dT%H:%M:%SZ", epoch)
end

local function notification(n)
  local slot = n % slots
  local pass = math.floor(n / slots)
  local starts = iso(base + (fresh and pass or 0))
  local name = string.format("%s%d", prefix, slot % groups)
  local cluster = "bench"
  local alerts = {}
  for k = 0, per - 1 do
    local idx = slot * per + k
    local sev = (idx % 10 == 0) and "critical" or "warning"
    alerts[#alerts + 1] = string.format(
      '{"status":"firing","labels":{"alertname":"%s","cluster":"%s","instance":"host%d:9100",'
      .. '"job":"bench","severity":"%s"},"annotations":{"summary":"%s on host%d",'
      .. '"runbook_url":"https://runbooks.example/%s"},"startsAt":"%s",'
      .. '"endsAt":"0001-01-01T00:00:00Z","generatorURL":"http://prometheus.bench:9090/graph",'
      .. '"fingerprint":"%08x%08x"}',
      name, cluster, idx, sev, name, idx, name, starts, salt, idx)
  end
  return string.format(
    '{"version":"4","groupKey":"{}:{alertname=\\"%s\\", cluster=\\"%s\\"}",'
    .. '"truncatedAlerts":0,"status":"firing","receiver":"remediator",'
    .. '"groupLabels":{"alertname":"%s","cluster":"%s"},'
    .. '"commonLabels":{"alertname":"%s","cluster":"%s","job":"bench"},'
    .. '"commonAnnotations":{},"externalURL":"http://alertmanager-0:9093","alerts":[%s]}',
    name, cluster, name, cluster, name, cluster, table.concat(alerts, ","))
end

function request()
  local n = next_n
  if dry_call_pending then
    dry_call_pending = false
  else
    next_n = next_n + nthreads
    if first_t == 0 then first_t = monotonic() end
  end
  return wrk.format(nil, nil, nil, notification(n))
end

function response(status, headers, body)
  responses = responses + 1
  last_t = monotonic()
  if status >= 200 and status < 300 then s2xx = s2xx + 1
  elseif status >= 400 and status < 500 then s4xx = s4xx + 1
  elseif status >= 500 then s5xx = s5xx + 1
  else sother = sother + 1 end
  if mine >= 0 and responses >= mine then
    wrk.thread:stop()
  end
end

function done(summary, latency, requests)
  local c = { s2xx = 0, s4xx = 0, s5xx = 0, sother = 0 }
  local t0, t1 = nil, 0
  for _, t in ipairs(threads) do
    for key, _ in pairs(c) do c[key] = c[key] + (t:get(key) or 0) end
    local f, l = t:get("first_t") or 0, t:get("last_t") or 0
    if f > 0 and (t0 == nil or f < t0) then t0 = f end
    if l > t1 then t1 = l end
  end
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_s":%.6f,"bytes":%d,"status_2xx":%d,"status_4xx":%d,'
    .. '"status_5xx":%d,"status_other":%d,"errors_connect":%d,"errors_read":%d,'
    .. '"errors_write":%d,"errors_timeout":%d,"first_to_last_s":%.6f,'
    .. '"latency_ms":{"p50":%.3f,"p90":%.3f,"p95":%.3f,"p99":%.3f,"max":%.3f,"mean":%.3f}}\n',
    summary.requests, summary.duration / 1e6, summary.bytes, c.s2xx, c.s4xx, c.s5xx, c.sother,
    e.connect, e.read, e.write, e.timeout, t0 and (t1 - t0) or 0,
    latency:percentile(50) / 1000, latency:percentile(90) / 1000,
    latency:percentile(95) / 1000, latency:percentile(99) / 1000,
    latency.max / 1000, latency.mean / 1000))
end
