#!/usr/bin/env bash
# Checks the alert rules and the Grafana dashboard:
#
#   1. promtool check rules   on the alert rule files (syntax, templates);
#   2. promtool test rules    on their unit tests;
#   3. the dashboard is valid JSON with the expected structure (data source
#      and template variables), and every PromQL expression in it parses:
#      deploy/grafana/exprs.go substitutes the Grafana variables
#      ($__rate_interval -> 5m, $instance/$name/... -> .*) and writes the
#      expressions as recording rules, which promtool check rules parses;
#   4. every metric name used by the rules, their tests and the dashboard is
#      one the agent exports (the allow-list below).
#
# Run from the repository root (any directory works): bash deploy/alerts/check.sh
# Needs promtool (Debian: apt-get install prometheus), go and python3.
set -euo pipefail

cd "$(dirname "$0")/../.."

RULES=(deploy/alerts/dockscope.rules.yml deploy/alerts/cadvisor-compat.rules.yml)
TESTS=(deploy/alerts/dockscope.rules.test.yml deploy/alerts/cadvisor-compat.rules.test.yml)
DASHBOARD=deploy/grafana/dockscope.json

# The metric names the agent exports (README, "What it exports"; design.md §5),
# plus Prometheus' own `up`. A name missing here is a typo or a metric that
# does not exist.
ALLOWED=(
	up
	container_state container_restarts_total container_last_exit_code
	container_start_time_seconds container_last_seen
	container_health_state container_health_status
	container_spec_memory_limit_bytes container_spec_cpu_quota container_spec_cpu_period container_spec_cpu_shares
	container_oom_events_total container_memory_oom_kills_total container_events_total
	container_cpu_usage_seconds_total container_cpu_user_seconds_total container_cpu_system_seconds_total
	container_cpu_cfs_periods_total container_cpu_cfs_throttled_periods_total container_cpu_cfs_throttled_seconds_total
	container_memory_usage_bytes container_memory_working_set_bytes container_memory_rss container_memory_cache
	container_memory_swap container_memory_failcnt
	container_pids
	container_network_receive_bytes_total container_network_receive_packets_total
	container_network_receive_packets_dropped_total container_network_receive_errors_total
	container_network_transmit_bytes_total container_network_transmit_packets_total
	container_network_transmit_packets_dropped_total container_network_transmit_errors_total
	container_fs_reads_bytes_total container_fs_writes_bytes_total container_fs_reads_total container_fs_writes_total
	container_info
	dockscope_container_log_lines_total dockscope_container_log_checkpoint_lag_seconds
	swarm_service_replicas_desired swarm_service_replicas_running
	dockscope_build_info dockscope_docker_info dockscope_docker_up dockscope_containers
	dockscope_records_received_total dockscope_records_sent_total dockscope_records_dropped_total
	dockscope_event_stream_reconnects_total dockscope_export_failures_total
	dockscope_log_stream_reconnects_total dockscope_log_stream_reopens_total dockscope_log_gaps_total dockscope_log_resume_mismatches_total
	dockscope_logs_unreadable_total dockscope_log_queue_bytes
	dockscope_log_checkpoint_saves_total dockscope_log_checkpoint_bytes_written_total dockscope_log_checkpoint_save_failures_total
	dockscope_config_last_reload_successful dockscope_stats_round_duration_seconds
)

step() { printf '\n== %s\n' "$*"; }
die() {
	echo "check.sh: $*" >&2
	exit 1
}

for tool in promtool go python3; do
	command -v "$tool" >/dev/null 2>&1 ||
		die "$tool not found in PATH (promtool: apt-get install prometheus, or a Prometheus release tarball)"
done

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

step "promtool check rules"
promtool check rules "${RULES[@]}"

step "promtool test rules"
# Test files name their rule files relative to themselves.
promtool test rules "${TESTS[@]}"

step "dashboard: JSON"
python3 -m json.tool "$DASHBOARD" >/dev/null || die "$DASHBOARD is not valid JSON"
echo "  $DASHBOARD: valid JSON"

step "dashboard: structure, and its expressions as recording rules"
go run ./deploy/grafana/exprs.go -dashboard "$DASHBOARD" \
	-rules-out "$tmp/dashboard.rules.yml" -names-out "$tmp/names.txt" \
	"${RULES[@]}" "${TESTS[@]}" ||
	die "$DASHBOARD, rules or tests: see above"
promtool check rules "$tmp/dashboard.rules.yml" ||
	die "an expression of $DASHBOARD does not parse (promtool's message above; rule dashboard:panel_<id>_<refId> is that panel's target, dashboard:variable_<name> that template variable)"

step "metric names"
printf '%s\n' "${ALLOWED[@]}" | sort -u >"$tmp/allowed.txt"
unknown=$(awk -F '\t' 'NR == FNR { ok[$1] = 1; next } !($1 in ok)' "$tmp/allowed.txt" "$tmp/names.txt")
if [ -n "$unknown" ]; then
	echo "metric names that are not in the allow-list (metric<TAB>where):" >&2
	echo "$unknown" >&2
	exit 1
fi
echo "  $(cut -f1 "$tmp/names.txt" | sort -u | wc -l) metric names used, all known"

echo
echo "check.sh: OK"
