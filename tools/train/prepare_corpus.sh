#!/usr/bin/env bash
# prepare_corpus.sh - build the English training text for the built-in tfab-tiny model.
#
# Usage: tools/train/prepare_corpus.sh [OUT_FILE] [CACHE_DIR]
#   OUT_FILE   default: $CACHE_DIR/corpus.txt
#   CACHE_DIR  default: ${TFAB_CACHE:-$HOME/.cache/tfab}/corpus
#
# Source: the Debian packages "fortunes" and "fortunes-min" (fortune-mod 1.99.1 data files, BSD licence: see
# debian/copyright inside the package, copied next to the corpus as COPYRIGHT.fortunes).
# The .deb is fetched with `apt-get download` and unpacked with `dpkg-deb -x` into the cache;
# nothing is installed. Only the English files of /usr/share/games/fortunes are used
# (no fortunes-off, no ascii-art, no code-heavy files).
#
# Cleaning (per cookie, cookies are separated by lines holding a single "%"):
#   - drop attribution lines ("-- Mark Twain", "-- by ..."), and everything after one;
#   - drop cookies with ASCII art, tables, code or headers (low letter ratio, many symbols,
#     leading "|", ">" quoting, e-mail headers, URLs);
#   - join hard-wrapped lines into paragraphs, collapse runs of spaces and tabs,
#     normalise quotes to ASCII, keep only printable ASCII;
#   - drop duplicates and cookies shorter than 20 characters.
# Output: one cookie per paragraph, paragraphs separated by an empty line ("\n\n"), which
# the trainer turns into EOS-separated documents.
# Idempotent: the download is cached; the output is rebuilt each time (it takes < 1 s).
set -euo pipefail

CACHE=${2:-${TFAB_CACHE:-$HOME/.cache/tfab}/corpus}
OUT=${1:-$CACHE/corpus.txt}
PKGS="fortunes fortunes-min"   # fortunes-min holds the file "fortunes"
FILES=(art computers cookie definitions drugs education ethnic food fortunes goedel humorists
    kids law linux linuxcookie literature love magic medicine men-women miscellaneous paradoxum
    people pets platitudes politics pratchett riddles science songs-poems sports startrek tao
    wisdom work zippy)

mkdir -p "$CACHE"
for PKG in $PKGS; do
    DEB=$(find "$CACHE" -maxdepth 1 -name "${PKG}_*.deb" | head -n1)
    if [ -z "$DEB" ]; then
        (cd "$CACHE" && apt-get download "$PKG" >&2)
        DEB=$(find "$CACHE" -maxdepth 1 -name "${PKG}_*.deb" | head -n1)
    fi
    if [ ! -e "$CACHE/root/.$PKG.unpacked" ]; then
        dpkg-deb -x "$DEB" "$CACHE/root" && touch "$CACHE/root/.$PKG.unpacked"
    fi
done
SRC="$CACHE/root/usr/share/games/fortunes"
mkdir -p "$(dirname "$OUT")"
cp "$CACHE/root/usr/share/doc/fortunes/copyright" "$(dirname "$OUT")/COPYRIGHT.fortunes" 2>/dev/null || true

python3 - "$SRC" "$OUT" "${FILES[@]}" <<'PY'
import re, sys
src, out, names = sys.argv[1], sys.argv[2], sys.argv[3:]
ATTR = re.compile(r'^\s*(--|---|\u2014)\s*\S')      # "-- Author", "-- by X"
BAD = re.compile(r'(https?://|www\.|@[a-z]+\.|^\s*[|>#]|^(From|Subject|Newsgroups):|[_=*#~^\\<>{}]{3,}|[/\\|]{2,})',
                 re.M)
QUOTES = {'\u2018': "'", '\u2019': "'", '\u201c': '"', '\u201d': '"', '\u2014': '--', '\u2013': '-',
          '\u2026': '...', '\t': ' '}
seen, kept, dropped = set(), [], 0
for name in names:
    raw = open(f'{src}/{name}', encoding='utf-8', errors='replace').read()
    for cookie in re.split(r'^%\s*$', raw, flags=re.M):
        lines = []
        for line in cookie.split('\n'):
            if ATTR.match(line):
                break
            lines.append(line)
        text = '\n'.join(lines).strip('\n')
        for a, b in QUOTES.items():
            text = text.replace(a, b)
        if not text.strip() or BAD.search(text):
            dropped += 1; continue
        letters = sum(c.isalpha() for c in text)
        if letters < 0.6 * len(text.replace(' ', '').replace('\n', '')) + 1:
            dropped += 1; continue
        # a line indented by 8+ spaces inside a cookie is usually a layout (poem, table):
        # keep poems' line structure only as sentence flow.
        paras = [p for p in re.split(r'\n\s*\n', text) if p.strip()]
        paras = [re.sub(r'\s+', ' ', p).strip() for p in paras]
        text = ' '.join(paras)
        text = ''.join(c for c in text if 32 <= ord(c) < 127)
        text = re.sub(r' {2,}', ' ', text).strip()
        if len(text) < 20 or text in seen:
            dropped += 1; continue
        seen.add(text); kept.append(text)
with open(out, 'w') as f:
    f.write('\n\n'.join(kept) + '\n')
print(f'prepare_corpus: {len(kept)} cookies kept, {dropped} dropped, '
      f'{sum(map(len, kept))} chars -> {out}', file=sys.stderr)
PY
echo "$OUT"
