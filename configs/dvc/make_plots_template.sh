#!/usr/bin/env bash
# Writes configs/dvc/plots.html: the page `dvc plots show` fills, with Vega, Vega-Lite and Vega-Embed inlined
# from their npm packages, so the plots render with no network (DVC's own page loads them from a CDN). The
# page has no {scripts} placeholder, so DVC adds no CDN script tags to it. .dvc/config points at it
# (plots.html_template). The generated file is committed; rerun this to change the versions.
set -euo pipefail
cd "$(dirname "$0")"
versions=(vega@5.33.1 vega-lite@5.23.0 vega-embed@6.29.0)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && npm pack --silent "${versions[@]}" >/dev/null && for f in *.tgz; do mkdir "${f%.tgz}" && tar -xzf "$f" -C "${f%.tgz}"; done)
{
  printf '<!DOCTYPE html>\n<html>\n<head>\n{refresh_tag}\n<meta charset="utf-8">\n<title>DVC plots</title>\n'
  for v in "${versions[@]}"; do
    name=${v%@*}
    dir=$(find "$tmp" -maxdepth 1 -type d -name "$name-[0-9]*")
    printf '<!-- %s, redistributed under its licence:\n' "$v"
    if [ -f "$dir/package/LICENSE" ]; then cat "$dir/package/LICENSE"; else
      # vega's npm package ships no LICENSE file; its package.json names the licence and the holder
      sed -n 's/.*"\(license\|author\)": *"\([^"]*\)".*/\1: \2/p' "$dir/package/package.json"; fi
    printf '\n-->\n<script>\n'
    cat "$dir/package/build/$name.min.js"
    printf '\n</script>\n'
  done
  printf '<style>table { border-spacing: 15px; }</style>\n</head>\n<body>\n{plot_divs}\n</body>\n</html>\n'
} > plots.html
echo "configs/dvc/plots.html: $(wc -c < plots.html) bytes"
