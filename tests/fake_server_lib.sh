# Sourced by the shell tests that talk to tests/tools/fake_chat_server: a
# temp folder, failure counting, and starting/stopping the server.
# Needs: $build (the build folder) and a name for the temp folder in $1.
tmp=$(mktemp -d "/tmp/$1.XXXXXX")
server_bin=$build/tests/fake_chat_server
server_pid=
stop_server() { if [ -n "$server_pid" ]; then kill "$server_pid" 2> /dev/null; wait "$server_pid" 2> /dev/null; fi; server_pid=; }
trap 'stop_server; rm -rf "$tmp"' EXIT
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
# start_server RULES LOG [KEY]: a server on a free port; sets $port.
start_server() {
  rm -f "$tmp/port"
  "$server_bin" "$1" "$tmp/port" "$2" ${3:+"$3"} &
  server_pid=$!
  for _ in $(seq 1 100); do [ -s "$tmp/port" ] && break; sleep 0.05; done
  port=$(cat "$tmp/port")
}
