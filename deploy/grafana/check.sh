#!/usr/bin/env bash
# Keeps three lists of Shoal's Prometheus metrics in step, offline (jq, grep; no build):
#   the code       every metrics::counter!/gauge!/histogram!("shoal_...") in crates/*/src;
#   the catalogue  the table under "## Metrics" in docs/operations.md;
#   the dashboard  deploy/grafana/shoal-dashboard.json.
# It fails, naming the metrics, when one is emitted but not catalogued, catalogued but not
# emitted, used by the dashboard but not catalogued, or catalogued but on no panel. It also
# checks the dashboard itself: valid JSON, schemaVersion 39, the DS_PROMETHEUS input and the
# `instance` variable, unique panel ids, panels inside the 24-column grid and not overlapping,
# every panel with a non-empty query on ${DS_PROMETHEUS}, and every selector of a shoal_ metric
# filtered by instance=~"$instance". Histograms are used as NAME_bucket, NAME_sum or NAME_count.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
# shellcheck disable=SC2034  # read and updated by check-lib.sh's step, ok and fail
started=$SECONDS PASSED=0 FAILED=0
# shellcheck source=/dev/null
. "$root/deploy/check-lib.sh"

dashboard="$here/shoal-dashboard.json"
docs="$root/docs/operations.md"
# shellcheck disable=SC2016  # the literal Grafana variable reference, not a shell expansion
instance_filter='instance=~"$instance"'
# shellcheck disable=SC2016
datasource_uid='${DS_PROMETHEUS}'

# list WORDS...: one per line, indented, for failure messages.
list() { printf '        %s\n' "$@"; }

step "dashboard JSON: deploy/grafana/shoal-dashboard.json"
[ -f "$dashboard" ] || fail "$dashboard does not exist"
jq empty "$dashboard" 2>/dev/null || fail "not valid JSON: $(jq empty "$dashboard" 2>&1 | head -n 1)"
ok "valid JSON"
[ "$(jq '.schemaVersion' "$dashboard")" = 39 ] || fail "schemaVersion is $(jq '.schemaVersion' "$dashboard"), not 39"
jq -e '[.__inputs[]? | select(.name == "DS_PROMETHEUS" and .type == "datasource" and .pluginId == "prometheus")] | length == 1' \
    "$dashboard" >/dev/null || fail "__inputs has no DS_PROMETHEUS Prometheus datasource input"
jq -e '[.templating.list[]? | select(.name == "instance" and .multi == true and .includeAll == true)] | length == 1' \
    "$dashboard" >/dev/null || fail "templating has no multi-value \`instance\` variable with All"
ok "schemaVersion 39, a DS_PROMETHEUS input, an \`instance\` variable (multi, All)"

# Every panel, rows and the panels of collapsed rows included.
all_panels='[.panels[] | ., (.panels // [])[]]'
mapfile -t dup_ids < <(jq -r "$all_panels | map(.id) | group_by(.) | map(select(length > 1) | .[0]) | .[]" "$dashboard")
[ "${#dup_ids[@]}" -eq 0 ] || fail "panel ids used more than once: ${dup_ids[*]}"
mapfile -t no_id < <(jq -r "$all_panels | .[] | select((.id | type) != \"number\") | .title" "$dashboard")
[ "${#no_id[@]}" -eq 0 ] || fail "panels without a numeric id:"$'\n'"$(list "${no_id[@]}")"
panel_count="$(jq "$all_panels | map(select(.type != \"row\")) | length" "$dashboard")"
ok "$panel_count panels (and $(jq "$all_panels | map(select(.type == \"row\")) | length" "$dashboard") rows), ids unique"

mapfile -t empty < <(jq -r "$all_panels | .[] | select(.type != \"row\")
    | select([.targets[]? | .expr // \"\" | select(test(\"\\\\S\"))] | length == 0)
    | \"\(.id) \(.title)\"" "$dashboard")
[ "${#empty[@]}" -eq 0 ] || fail "panels without a target with a non-empty expr:"$'\n'"$(list "${empty[@]}")"
mapfile -t no_ref < <(jq -r "$all_panels | .[] | select(.type != \"row\") | . as \$p | .targets[]
    | select((.refId // \"\") == \"\") | \"\(\$p.id) \(\$p.title)\"" "$dashboard")
[ "${#no_ref[@]}" -eq 0 ] || fail "targets without a refId:"$'\n'"$(list "${no_ref[@]}")"
mapfile -t bad_types < <(jq -r "$all_panels | .[] | select(.type | IN(\"row\", \"timeseries\", \"stat\") | not)
    | \"\(.id) \(.title): \(.type)\"" "$dashboard")
[ "${#bad_types[@]}" -eq 0 ] || fail "panel types other than row, timeseries and stat:"$'\n'"$(list "${bad_types[@]}")"
mapfile -t bad_ds < <(jq -r --arg uid "$datasource_uid" "$all_panels | .[] | select(.type != \"row\") | . as \$p
    | select(.datasource.uid != \$uid or ([.targets[] | select(.datasource.uid != \$uid)] | length > 0))
    | \"\(\$p.id) \(\$p.title)\"" "$dashboard")
[ "${#bad_ds[@]}" -eq 0 ] || fail "panels or targets not on the $datasource_uid datasource:"$'\n'"$(list "${bad_ds[@]}")"
mapfile -t no_desc < <(jq -r "$all_panels | .[] | select(.type != \"row\") | select((.description // \"\") == \"\")
    | \"\(.id) \(.title)\"" "$dashboard")
[ "${#no_desc[@]}" -eq 0 ] || fail "panels without a description:"$'\n'"$(list "${no_desc[@]}")"
ok "every panel is a timeseries or stat with a description and a non-empty query on $datasource_uid"

mapfile -t bad_grid < <(jq -r "$all_panels | .[] | select((.gridPos.w // 0) < 1 or (.gridPos.h // 0) < 1
    or (.gridPos.x // -1) < 0 or (.gridPos.y // -1) < 0 or .gridPos.x + .gridPos.w > 24)
    | \"\(.id) \(.title) \(.gridPos)\"" "$dashboard")
[ "${#bad_grid[@]}" -eq 0 ] || fail "panels outside the 24-column grid:"$'\n'"$(list "${bad_grid[@]}")"
mapfile -t overlaps < <(jq -r '[.panels[] | {id, g: .gridPos}] as $p
    | range(0; $p | length) as $i | range($i + 1; $p | length) as $j | $p[$i] as $a | $p[$j] as $b
    | select($a.g.x < $b.g.x + $b.g.w and $b.g.x < $a.g.x + $a.g.w
        and $a.g.y < $b.g.y + $b.g.h and $b.g.y < $a.g.y + $a.g.h)
    | "panels \($a.id) and \($b.id)"' "$dashboard")
[ "${#overlaps[@]}" -eq 0 ] || fail "overlapping panels:"$'\n'"$(list "${overlaps[@]}")"
ok "every panel inside the 24-column grid, none overlapping"

mapfile -t exprs < <(jq -r "$all_panels | .[] | .targets[]?.expr // empty | gsub(\"\\n\"; \" \")" "$dashboard")
unfiltered=()
for expr in "${exprs[@]}"; do
    while IFS= read -r selector; do
        [ -n "$selector" ] || continue
        case "$selector" in
        *"$instance_filter"*) ;;
        *) unfiltered+=("$selector") ;;
        esac
    done < <(grep -oE 'shoal_[a-z_]+(\{[^}]*\})?' <<<"$expr" || true)
done
[ "${#unfiltered[@]}" -eq 0 ] || fail "selectors not filtered by $instance_filter:"$'\n'"$(list "${unfiltered[@]}")"
ok "every selector of a shoal_ metric (${#exprs[@]} queries) is filtered by $instance_filter"

step "the catalogue: docs/operations.md, ## Metrics"
# "name type" for every row of the table, in the section up to the next "## " heading.
# shellcheck disable=SC2016  # backquotes of Markdown, not a command substitution
catalogue_rows="$(awk '/^## Metrics$/ { on = 1; next } on && /^## / { exit } on' "$docs" |
    sed -nE 's/^\| `(shoal_[a-z_]+)` \| *([a-z]+) *\|.*/\1 \2/p')"
[ -n "$catalogue_rows" ] || fail "no metric rows found in the ## Metrics table of $docs"
mapfile -t catalogue < <(cut -d' ' -f1 <<<"$catalogue_rows" | sort)
mapfile -t dup_rows < <(printf '%s\n' "${catalogue[@]}" | uniq -d)
[ "${#dup_rows[@]}" -eq 0 ] || fail "metrics listed twice in the table:"$'\n'"$(list "${dup_rows[@]}")"
mapfile -t bad_kind < <(awk '$2 != "counter" && $2 != "gauge" && $2 != "histogram" { print $1 " (" $2 ")" }' <<<"$catalogue_rows")
[ "${#bad_kind[@]}" -eq 0 ] || fail "table rows whose type is not counter, gauge or histogram:"$'\n'"$(list "${bad_kind[@]}")"
ok "${#catalogue[@]} metrics catalogued"
kind_of() { awk -v m="$1" '$1 == m { print $2 }' <<<"$catalogue_rows"; }

step "the dashboard uses only catalogued metrics"
# Every shoal_ name in the queries and in the variable's definition; a histogram's _bucket, _sum
# or _count series counts as the histogram, and a histogram used bare is an error (Prometheus
# has no such series).
mapfile -t used_raw < <({
    printf '%s\n' "${exprs[@]}"
    jq -r '.templating.list[]? | .definition // empty, (.query | if type == "object" then .query // empty else . // empty end)' "$dashboard"
} | grep -oE 'shoal_[a-z_]+' | sort -u || true)
used=()
unknown=()
bare=()
for name in "${used_raw[@]}"; do
    kind="$(kind_of "$name")"
    base="$(sed -E 's/_(bucket|sum|count)$//' <<<"$name")"
    if [ "$kind" = histogram ]; then
        bare+=("$name")
    elif [ -n "$kind" ]; then
        used+=("$name")
    elif [ "$base" != "$name" ] && [ "$(kind_of "$base")" = histogram ]; then
        used+=("$base")
    else
        unknown+=("$name")
    fi
done
[ "${#unknown[@]}" -eq 0 ] || fail "the dashboard uses metrics that are not in the table of docs/operations.md:"$'\n'"$(list "${unknown[@]}")"
[ "${#bare[@]}" -eq 0 ] || fail "histograms used without _bucket, _sum or _count:"$'\n'"$(list "${bare[@]}")"
mapfile -t used < <(printf '%s\n' "${used[@]}" | sort -u)
ok "${#used[@]} distinct metrics used, all catalogued"

step "the catalogue matches the code: crates/*/src"
# A macro call this grep cannot read (name not a literal on the same line, a macro imported
# without the metrics:: path, a name without the shoal_ prefix) would hide a metric: refuse it.
mapfile -t unreadable < <(grep -rnE '\b(counter|gauge|histogram)!' "$root"/crates/*/src |
    grep -vE 'metrics::(counter|gauge|histogram)!\("shoal_[a-z_]+"' | sed "s|^$root/||" || true)
[ "${#unreadable[@]}" -eq 0 ] ||
    fail "metric macros this check cannot read (write metrics::KIND!(\"shoal_...\" on one line):"$'\n'"$(list "${unreadable[@]}")"
code_rows="$(grep -rhoE 'metrics::(counter|gauge|histogram)!\("[a-z_]+"' "$root"/crates/*/src |
    sed -E 's/^metrics::([a-z]+)!\("([a-z_]+)"$/\2 \1/' | sort -u)"
[ -n "$code_rows" ] || fail "no metrics found in $root/crates/*/src"
mapfile -t emitted < <(cut -d' ' -f1 <<<"$code_rows" | sort -u)
mapfile -t twice < <(cut -d' ' -f1 <<<"$code_rows" | uniq -d)
[ "${#twice[@]}" -eq 0 ] || fail "metrics emitted as more than one kind:"$'\n'"$(list "${twice[@]}")"
mapfile -t uncatalogued < <(comm -23 <(printf '%s\n' "${emitted[@]}") <(printf '%s\n' "${catalogue[@]}"))
[ "${#uncatalogued[@]}" -eq 0 ] ||
    fail "emitted by the code but not in the table of docs/operations.md (add a row):"$'\n'"$(list "${uncatalogued[@]}")"
mapfile -t not_emitted < <(comm -13 <(printf '%s\n' "${emitted[@]}") <(printf '%s\n' "${catalogue[@]}"))
[ "${#not_emitted[@]}" -eq 0 ] ||
    fail "in the table of docs/operations.md but emitted nowhere in crates/*/src:"$'\n'"$(list "${not_emitted[@]}")"
mapfile -t kind_mismatch < <(while read -r name kind; do
    [ "$(kind_of "$name")" = "$kind" ] || echo "$name: $kind in the code, $(kind_of "$name") in the table"
done <<<"$code_rows")
[ "${#kind_mismatch[@]}" -eq 0 ] || fail "metric types that differ:"$'\n'"$(list "${kind_mismatch[@]}")"
ok "the ${#emitted[@]} metrics the code emits are exactly the catalogued ones, with the same types"

step "every catalogued metric is on the dashboard"
mapfile -t unused < <(comm -23 <(printf '%s\n' "${catalogue[@]}") <(printf '%s\n' "${used[@]}"))
[ "${#unused[@]}" -eq 0 ] ||
    fail "catalogued metrics on no panel of the dashboard (give each a panel):"$'\n'"$(list "${unused[@]}")"
ok "all ${#catalogue[@]} catalogued metrics have a panel"

echo
echo "grafana: dashboard uses ${#used[@]} of ${#catalogue[@]} catalogued metrics; catalogue matches the code (${#emitted[@]} metrics)"
