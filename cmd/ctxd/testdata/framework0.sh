#!/usr/bin/env bash
# A Framework0 shell user's session, unchanged, against ctxd: only curl, jq
# and bash. Run by TestFramework0ShellScript with CTX=<server URL>.
set -euo pipefail

CTX=${CTX:?set CTX to the server URL}
step=start
fail() { echo "FAIL at ${step}: $*" >&2; exit 1; }
expect() { # expect WHAT GOT WANT
	[ "$2" = "$3" ] || fail "$1: got [$2], want [$3]"
}
post() { # post PATH JSON
	curl -sf -X POST -H 'Content-Type: application/json' -d "$2" "$CTX$1"
}
status_of() { # status_of curl-args...: the HTTP status only
	curl -s -o /dev/null -w '%{http_code}' "$@"
}

step=liveness
expect "GET /" "$(status_of "$CTX/")" 200

step=set
r=$(post /ctx '{"key":"app.status","value":"running","who":"deploy.sh"}')
expect "set status" "$(jq -r .status <<<"$r")" success
expect "set who" "$(jq -r .who <<<"$r")" deploy.sh
post /ctx '{"key":"app.config.debug","value":true}' >/dev/null
post /ctx '{"key":"app.config","value":{"retries":3,"hosts":["a","b"]}}' >/dev/null
r=$(post /ctx '{"key":"app.status","value":"degraded","who":"monitor"}')
expect "default who" "$(post /ctx '{"key":"n","value":42}' | jq -r .who)" api_client

step=get
expect "string" "$(curl -sf "$CTX/ctx?key=app.status" | jq -r .value)" degraded
expect "object" "$(curl -sf "$CTX/ctx?key=app.config" | jq -c .value)" '{"retries":3,"hosts":["a","b"]}'
expect "boolean, path form" "$(curl -sf "$CTX/ctx/app.config.debug" | jq .value)" true
expect "number" "$(curl -sf "$CTX/ctx/n" | jq .value)" 42
expect "unknown key" "$(curl -sf "$CTX/ctx?key=nope" | jq -c '[.status, .value]')" '["success",null]'
expect "unknown key, path form" "$(status_of "$CTX/ctx/nope")" 404
expect "no key" "$(status_of "$CTX/ctx")" 400
expect "missing value" "$(status_of -X POST -H 'Content-Type: application/json' -d '{"key":"x"}' "$CTX/ctx")" 400
expect "bad JSON" "$(status_of -X POST -H 'Content-Type: application/json' -d '{"key":' "$CTX/ctx")" 400
expect "error status" "$(curl -s "$CTX/ctx/nope" | jq -r .status)" error

step=list
all=$(curl -sf "$CTX/ctx/all")
expect "keys" "$(jq -r '.context | keys | join(",")' <<<"$all")" "app.config,app.config.debug,app.status,n"
expect "history count" "$(jq .history_count <<<"$all")" 5
expect "list status" "$(jq -r .status <<<"$all")" success

step=delete
expect "delete" "$(curl -sf -X DELETE "$CTX/ctx/n?who=cleanup" | jq -r '.status + " " + .who')" "success cleanup"
expect "deleted" "$(curl -sf "$CTX/ctx?key=n" | jq .value)" null

step=history
h=$(curl -sf "$CTX/ctx/history?key=app.status")
expect "filtered" "$(jq .filtered_entries <<<"$h")" 2
expect "total" "$(jq .total_entries <<<"$h")" 6
expect "actions" "$(jq -r '[.history[].action] | join(",")' <<<"$h")" "set,set"
expect "before" "$(jq -r '.history[1].before' <<<"$h")" running
expect "after" "$(jq -r '.history[1].after' <<<"$h")" degraded
expect "who" "$(jq -r '.history[1].who' <<<"$h")" monitor
expect "by who" "$(curl -sf "$CTX/ctx/history?who=cleanup" | jq -c '[.history[] | [.key, .action, .before, .after]]')" '[["n","delete",42,null]]'

step=dump
d=$(post /ctx/dump '{"format":"json","filename":"nightly","who":"cron","include_history":true}')
expect "dump name" "$(jq -r .filename <<<"$d")" nightly.json
expect "dump keys" "$(jq .key_count <<<"$d")" 3
expect "dump who" "$(jq -r .who <<<"$d")" cron
expect "csv by query" "$(curl -sf -X POST "$CTX/ctx/dump?format=csv&filename=sheet" | jq -r '.status + " " + .filename')" "success sheet.csv"
expect "bad format" "$(status_of -X POST -H 'Content-Type: application/json' -d '{"format":"xml"}' "$CTX/ctx/dump")" 400

step=list-dumps
l=$(curl -sf "$CTX/ctx/dump/list")
expect "dump count" "$(jq .dump_count <<<"$l")" 2
expect "dump files" "$(jq -r '[.dump_files[].filename] | sort | join(",")' <<<"$l")" "nightly.json,sheet.csv"

step=download
n=$(curl -sf "$CTX/ctx/dump/nightly.json")
expect "dumped value" "$(jq -r '.context["app.status"]' <<<"$n")" degraded
expect "dumped history" "$(jq '.history | length' <<<"$n")" 6
expect "dumped revision" "$(jq .revision <<<"$n")" 6
read -r header < <(curl -sf "$CTX/ctx/dump/sheet.csv")
expect "csv header" "${header%$'\r'}" "Key,Value,Type,Version,Revision,Who,Updated_At,Expires_At"
expect "unknown dump" "$(status_of "$CTX/ctx/dump/nope.json")" 404
expect "escaping dump" "$(status_of --path-as-is "$CTX/ctx/dump/../ctxd.db")" 400
expect "encoded escaping dump" "$(status_of "$CTX/ctx/dump/..%2Fctxd.db")" 400

step=status
expect "status" "$(curl -sf "$CTX/ctx/status" | jq -r .status)" running

echo "framework0 shell session: OK"
