-- wrk script for POST /api/v1/health/webhook, driven by bench/webhook_load.py.
--
-- Arguments after "--": token, node count, run id, wrk thread count. Each
-- request is a fresh report from the next node in turn, with 10 services, a
-- unique event_id and the current time, so no delivery is a duplicate.
--
-- Every wrk thread has its own Lua state: the thread index set in setup()
-- keeps event ids unique across threads, and done() sums the status counts
-- that each thread keeps in its globals.

local threads = {}
local thread_count = 0

function setup(thread)
  thread:set("thread_index", thread_count)
  thread_count = thread_count + 1
  table.insert(threads, thread)
end

local SERVICES = {
  "nginx", "postgres", "redis", "ssh", "headscale",
  "comfyui", "n8n", "backup", "dns", "ntp",
}

function init(args)
  token = args[1]
  node_count = tonumber(args[2])
  run_id = args[3]
  thread_total = tonumber(args[4])
  sent = 0
  statuses = {}
  wrk.method = "POST"
  wrk.headers["Authorization"] = "Bearer " .. token
  wrk.headers["Content-Type"] = "application/json"
end

local function services_json(seed)
  local parts = {}
  for index, name in ipairs(SERVICES) do
    -- One service in seven is down, so both statuses reach the database.
    local status = ((seed + index) % 7 == 0) and "unhealthy" or "healthy"
    parts[index] = string.format(
      '{"name":"%s","status":"%s","response_time_ms":%d.%d,'
        .. '"details":{"target":"tcp://10.0.0.%d:%d"}}',
      name, status, (seed + index) % 250, index, index, 8000 + index
    )
  end
  return table.concat(parts, ",")
end

function request()
  -- Interleaving the threads' sequences walks every node in turn.
  local sequence = sent * thread_total + thread_index
  sent = sent + 1
  local node = string.format("bench-node-%04d", sequence % node_count)
  local body = string.format(
    '{"node":"%s","cpu_percent":%d.5,"ram_percent":%d.25,"disk_percent":%d.0,'
      .. '"temperature":%d.0,"timestamp":"%s","event_id":"%s-%d-%d",'
      .. '"services":[%s]}',
    node, sequence % 100, (sequence * 7) % 100, (sequence * 3) % 100,
    30 + sequence % 40, os.date("!%Y-%m-%dT%H:%M:%SZ"),
    run_id, thread_index, sent, services_json(sequence)
  )
  return wrk.format(nil, nil, nil, body)
end

function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end

-- Prints one line that webhook_load.py parses: key=value pairs, times in
-- microseconds, status counts as status:count.
function done(summary, latency, requests)
  local totals = {}
  for _, thread in ipairs(threads) do
    for status, count in pairs(thread:get("statuses")) do
      totals[status] = (totals[status] or 0) + count
    end
  end
  local counts = {}
  for status, count in pairs(totals) do
    table.insert(counts, status .. ":" .. count)
  end
  local errors = summary.errors
  io.write(string.format(
    "WRK_RESULT requests=%d duration_us=%d p50_us=%d p99_us=%d max_us=%d "
      .. "socket_errors=%d timeouts=%d statuses=%s\n",
    summary.requests, summary.duration,
    latency:percentile(50), latency:percentile(99), latency.max,
    errors.connect + errors.read + errors.write, errors.timeout,
    table.concat(counts, ",")
  ))
end
