"""The pyarrow schemas of every table mmtriage writes (the fleet dataset's tables). One place,
so the parsers' tidy frames, the dataset and the reports agree. Bump SCHEMA_VERSION when a
column changes meaning; adding a column is compatible."""
from __future__ import annotations

import pyarrow as pa

SCHEMA_VERSION = 1

_KEY = [pa.field("bundle_key", pa.string(), nullable=False), pa.field("host", pa.string())]

HOSTS = pa.schema(_KEY + [
    pa.field("bundle_id", pa.string()),
    pa.field("source_path", pa.string()),
    pa.field("kernel_release", pa.string()),
    pa.field("kernel_release_source", pa.string()),
    pa.field("defrag_mode", pa.int8()),
    pa.field("defrag_mode_source", pa.string()),
    pa.field("fix_status", pa.string()),
    pa.field("policy", pa.string()),
    pa.field("first_time", pa.timestamp("us", tz="UTC")),
    pa.field("last_time", pa.timestamp("us", tz="UTC")),
    pa.field("span_hours", pa.float64()),
    pa.field("slub_reports", pa.int64()),
    pa.field("page_alloc_reports", pa.int64()),
    pa.field("oom_reports", pa.int64()),
    pa.field("suppressed", pa.int64()),
    pa.field("failures_reported", pa.int64()),
    pa.field("failures_estimated", pa.int64()),
    pa.field("failures_per_hour", pa.float64()),
    pa.field("bailout_estimated", pa.int64()),
    pa.field("low_memory_estimated", pa.int64()),
    pa.field("high_order_estimated", pa.int64()),
    pa.field("speculative_estimated", pa.int64()),
    pa.field("unknown_estimated", pa.int64()),
    pa.field("free_mib_other_types", pa.float64()),
    pa.field("free_pageblocks_max", pa.int64()),
    pa.field("corroborated_errors", pa.int64()),
    pa.field("snapshots", pa.int64()),
    pa.field("partial_records", pa.int64()),
    pa.field("verdict", pa.string()),
    pa.field("host_bucket", pa.string()),
])

EVENTS = pa.schema(_KEY + [
    pa.field("source", pa.string()),
    pa.field("line", pa.int64()),
    pa.field("kind", pa.string()),
    pa.field("time_s", pa.float64()),
    pa.field("time", pa.timestamp("us", tz="UTC")),
    pa.field("gfp_mask", pa.int64()),
    pa.field("gfp_text", pa.string()),
    pa.field("order", pa.int64()),
    pa.field("migratetype", pa.string()),
    pa.field("cache", pa.string()),
    pa.field("comm", pa.string()),
    pa.field("slab_page", pa.bool_()),
    pa.field("partial", pa.bool_()),
    pa.field("cause", pa.string()),
    pa.field("confidence", pa.float64()),
    pa.field("evidence_source", pa.string()),
    pa.field("free_mib_other_types", pa.float64()),
    pa.field("free_pageblocks", pa.int64()),
    pa.field("kernel_release", pa.string()),
    pa.field("date", pa.string()),
    pa.field("host_bucket", pa.string()),
])

PAGETYPEINFO = pa.schema(_KEY + [
    pa.field("time", pa.timestamp("us", tz="UTC")),
    pa.field("node", pa.int32()), pa.field("zone", pa.string()), pa.field("type", pa.string()),
    pa.field("order", pa.int32()), pa.field("count", pa.int64()), pa.field("capped", pa.bool_()),
    pa.field("host_bucket", pa.string()),
])

BUDDYINFO = pa.schema(_KEY + [
    pa.field("time", pa.timestamp("us", tz="UTC")),
    pa.field("node", pa.int32()), pa.field("zone", pa.string()),
    pa.field("order", pa.int32()), pa.field("count", pa.int64()),
    pa.field("host_bucket", pa.string()),
])

ZONEINFO = pa.schema(_KEY + [
    pa.field("time", pa.timestamp("us", tz="UTC")),
    pa.field("node", pa.int32()), pa.field("zone", pa.string()),
    pa.field("pages_free", pa.int64()), pa.field("min", pa.int64()), pa.field("low", pa.int64()),
    pa.field("high", pa.int64()), pa.field("boost", pa.int64()), pa.field("managed", pa.int64()),
    pa.field("present", pa.int64()), pa.field("nr_free_pages_blocks", pa.int64()),
    pa.field("host_bucket", pa.string()),
])

VMSTAT = pa.schema(_KEY + [
    pa.field("time", pa.timestamp("us", tz="UTC")),
    pa.field("name", pa.string()), pa.field("value", pa.int64()),
    pa.field("host_bucket", pa.string()),
])

# /proc/net/snmp and netstat (group = protocol), net/dev (group = interface) and softnet_stat
# (group = "cpuN"): demand and drops for hosts without ICMP counters.
NET_COUNTERS = pa.schema(_KEY + [
    pa.field("time", pa.timestamp("us", tz="UTC")),
    pa.field("source", pa.string()), pa.field("group", pa.string()),
    pa.field("name", pa.string()), pa.field("value", pa.int64()),
    pa.field("host_bucket", pa.string()),
])

TABLES = {"hosts": HOSTS, "events": EVENTS, "pagetypeinfo": PAGETYPEINFO,
          "buddyinfo": BUDDYINFO, "zoneinfo": ZONEINFO, "vmstat": VMSTAT,
          "net_counters": NET_COUNTERS}
PARTITIONS = {"events": ["date", "host_bucket"]}
DEFAULT_PARTITIONS = ["host_bucket"]
