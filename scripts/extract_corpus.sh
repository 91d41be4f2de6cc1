#!/usr/bin/env bash
# Builds the training corpus from the English text Debian packages ship (see docs/data.md).
#
#   scripts/extract_corpus.sh OUT_DIR
#
# Downloads the packages with `apt-get download` into a temporary folder (no root, nothing is
# installed), unpacks them with `dpkg -x`, and writes one plain-text file per source to
# OUT_DIR/<source>.txt. Documents inside a file are separated by a line holding only a form feed
# ("\n\f\n"); `jetlm data build` splits on that. Markup (HTML, RST, POD, man, OSIS) is cleaned.
# Rerunnable: each output file is written to a temporary name and renamed when complete; a source
# whose file already exists is skipped unless FORCE=1. Needs: apt-get, dpkg, python3, man, col,
# pod2text, zcat. Env: DEB_CACHE=DIR keeps the downloaded .deb files there between runs;
# GCIDE_MB / WORDNET_MB cap the two dictionary sources (default 12 and 4 MB) so prose dominates.
set -euo pipefail

if [ $# -ne 1 ]; then
  echo "usage: $0 OUT_DIR" >&2
  exit 2
fi
OUT="$(mkdir -p "$1" && cd "$1" && pwd)"
for tool in apt-get dpkg python3 man col pod2text zcat; do
  command -v "$tool" > /dev/null || { echo "extract_corpus: '$tool' not found" >&2; exit 1; }
done

WORK="$(mktemp -d "${TMPDIR:-/tmp}/jetlm-corpus.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT
DEBS="${DEB_CACHE:-$WORK/debs}"
mkdir -p "$DEBS" "$WORK/root"

PACKAGES=(dict-gcide linux-doc-6.1 python3.11-doc wordnet-base perl-doc postgresql-doc-15 manpages
          manpages-dev sword-text-web python-django-doc r-cran-janeaustenr rust-doc fortunes fortunes-min
          jargon-text debian-handbook git-doc)

echo "extract_corpus: downloading ${#PACKAGES[@]} packages into $DEBS" >&2
missing=()
for p in "${PACKAGES[@]}"; do
  ls "$DEBS/${p}_"*.deb > /dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  # apt-get download writes into the current directory; _apt may lack access to it (harmless warning).
  (cd "$DEBS" && apt-get download -q "${missing[@]}" 2>&1 | grep -v "^W: Download is performed unsandboxed" >&2) || true
fi
for p in "${PACKAGES[@]}"; do
  deb=$(ls "$DEBS/${p}_"*.deb 2> /dev/null | head -1)
  if [ -z "$deb" ]; then echo "extract_corpus: could not download $p" >&2; exit 1; fi
  # One root per package, so each source reads only its own package's files.
  dpkg -x "$deb" "$WORK/root/$p"
done

# Man pages go through man(1) first (in parallel), since the Python side cannot render roff.
R="$WORK/root"
mkdir -p "$WORK/man"
# Only the manpages packages: perl-doc's man pages repeat its POD, which perl-doc.txt already has.
find "$R/manpages/usr/share/man" "$R/manpages-dev/usr/share/man" -type f -name '*.gz' -path '*/man[1-8]/*' | sort > "$WORK/man.list"
echo "extract_corpus: rendering $(wc -l < "$WORK/man.list") man pages" >&2
# Each page becomes WORK/man/<name>.txt; pages that fail to render (.so links) are left out.
xargs -P "$(nproc)" -a "$WORK/man.list" -I{} sh -c \
  'f="$1"; b=$(basename "$f" .gz); MANWIDTH=80 MAN_KEEP_FORMATTING=0 man -l "$f" 2> /dev/null | col -bx > "$2/$b.txt" || rm -f "$2/$b.txt"' \
  _ {} "$WORK/man"

# Perl's POD -> text.
mkdir -p "$WORK/pod"
find "$R/perl-doc/usr/share/perl" -name '*.pod' | sort > "$WORK/pod.list"
xargs -P "$(nproc)" -a "$WORK/pod.list" -I{} sh -c \
  'pod2text -w 80 "$1" > "$2/$(basename "$1" .pod).txt" 2> /dev/null || rm -f "$2/$(basename "$1" .pod).txt"' \
  _ {} "$WORK/pod"

cat > "$WORK/extract.py" << 'PYEOF'
import glob, gzip, html, html.parser, os, re, struct, sys, zlib

R, WORK, OUT = sys.argv[1], sys.argv[2], sys.argv[3]
FORCE = os.environ.get("FORCE") == "1"
GCIDE_MB = float(os.environ.get("GCIDE_MB", "12"))
WORDNET_MB = float(os.environ.get("WORDNET_MB", "4"))
SEP = "\n\f\n"


def read(path):
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        return f.read().decode("utf-8", "replace")


def tidy(text):
    # One document's final cleanup: no form feeds (they separate documents), no control characters,
    # no trailing spaces, at most two blank lines in a row.
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\f", "\n")
    text = re.sub(r"[\x00-\x08\x0b\x0e-\x1f\x7f]", "", text)
    text = re.sub(r"[ \t]+\n", "\n", text)
    text = re.sub(r"\n{4,}", "\n\n\n", text)
    return text.strip()


def write(name, docs):
    path = os.path.join(OUT, name + ".txt")
    docs = [d for d in (tidy(d) for d in docs) if len(d) >= 20]
    with open(path + ".tmp", "w", encoding="utf-8") as f:
        f.write(SEP.join(docs) + "\n")
    os.replace(path + ".tmp", path)
    print(f"  {name + '.txt':28s} {os.path.getsize(path) / 1e6:8.2f} MB  {len(docs):7d} documents", file=sys.stderr)


class HtmlText(html.parser.HTMLParser):
    # Visible text of an HTML page: scripts/styles/navigation dropped, block elements end lines,
    # <pre> kept verbatim.
    SKIP = {"script", "style", "head", "nav", "footer", "header", "noscript", "svg", "button"}
    BLOCK = {"p", "div", "br", "li", "ul", "ol", "dl", "dt", "dd", "tr", "table", "section", "article",
             "h1", "h2", "h3", "h4", "h5", "h6", "pre", "blockquote", "hr", "title", "td", "th"}

    def __init__(self, skip_classes=()):
        super().__init__(convert_charrefs=True)
        self.out, self.skip, self.pre, self.stack = [], 0, 0, []
        self.skip_classes = set(skip_classes)

    def handle_starttag(self, tag, attrs):
        classes = set((dict(attrs).get("class") or "").split())
        skipping = tag in self.SKIP or bool(classes & self.skip_classes)
        if tag not in ("br", "hr", "img", "meta", "link", "input", "wbr"):
            self.stack.append((tag, skipping))
            if skipping: self.skip += 1
            if tag == "pre": self.pre += 1
        if tag == "h1" and not self.skip: self.out.append("\x00")  # a chapter starts a new document
        if tag in self.BLOCK: self.out.append("\n")
        if tag == "li" and not self.skip: self.out.append("- ")

    def handle_endtag(self, tag):
        while self.stack:
            t, skipping = self.stack.pop()
            if skipping: self.skip -= 1
            if t == "pre": self.pre -= 1
            if t == tag: break
        if tag in self.BLOCK: self.out.append("\n")

    def handle_data(self, data):
        if self.skip: return
        self.out.append(data if self.pre else re.sub(r"\s+", " ", data))

    def text(self):
        lines = [l.strip() if not self.pre else l.rstrip() for l in "".join(self.out).split("\n")]
        return re.sub(r"\n{3,}", "\n\n", "\n".join(lines))


def html_text(path, skip_classes=()):
    p = HtmlText(skip_classes)
    p.feed(read(path))
    p.close()
    return p.text()


RST_ROLE = re.compile(r":[\w:+.-]+:`([^`<]*?)(?:\s*<[^>]*>)?`")


def clean_rst(text):
    # Keeps prose and code; drops directives' option lines, comments, section underlines, labels,
    # and unwraps roles (:ref:`text <target>` -> text) and inline literals.
    out = []
    for line in text.split("\n"):
        s = line.strip()
        if re.fullmatch(r"([=\-~^\"'`#*+_.:<>])\1{2,}", s):
            continue
        if re.match(r"\.\. (_[^:]*:|\|[^|]*\||[\w:-]+::)", s):
            # keep the argument of title-like directives (e.g. ".. function:: open(file)")
            m = re.match(r"\.\. [\w:-]+:: (.+)", s)
            if m and not re.match(r"\.\. (image|figure|include|literalinclude|toctree|highlight|"
                                  r"index|only|kernel-\w+|c:namespace|code-block|sectionauthor)::", s):
                out.append(m.group(1))
            continue
        if re.match(r"\s*:[\w -]+:(\s|$)", line) and out and (not out[-1].strip() or out[-1].lstrip().startswith(":")):
            continue  # directive options / field lists right after a directive
        if s.startswith(".. "):
            continue
        line = RST_ROLE.sub(r"\1", line)
        line = re.sub(r"``([^`]+)``", r"\1", line)
        line = re.sub(r"`([^`<]+?)\s*<[^>]+>`_+", r"\1", line)
        line = re.sub(r"`([^`]+)`_*", r"\1", line)
        line = re.sub(r"\*\*([^*]+)\*\*", r"\1", line)
        out.append(line)
    return "\n".join(out)


def done(name):
    if not FORCE and os.path.exists(os.path.join(OUT, name + ".txt")):
        print(f"  {name + '.txt':28s} exists, skipped (FORCE=1 redoes it)", file=sys.stderr)
        return True
    return False


def capped(docs, mb):
    out, total = [], 0
    for d in docs:
        total += len(d.encode("utf-8")) + 3
        if total > mb * 1e6: break
        out.append(d)
    return out


def gcide():
    text = gzip.open(f"{R}/dict-gcide/usr/share/dictd/gcide.dict.dz").read().decode("utf-8", "replace")  # dictzip is gzip
    # Entries start with "headword \pron\ ..." at column 0; group ~40 entries into one document so
    # documents are paragraph-sized rather than one line each.
    entries = re.split(r"\n\n(?=\S)", text)
    entries = [e for e in entries if not e.startswith("00-database")]
    docs = ["\n\n".join(entries[i:i + 40]) for i in range(0, len(entries), 40)]
    # Spread the cap over the whole alphabet: keep every k-th document.
    total = sum(len(d) for d in docs)
    step = max(1, round(total / (GCIDE_MB * 1e6)))
    return capped(docs[::step], GCIDE_MB)


def wordnet():
    docs = []
    for pos in ("noun", "verb", "adj", "adv"):
        group = []
        for line in read(f"{R}/wordnet-base/usr/share/wordnet/data.{pos}").split("\n"):
            if not line or line.startswith("  ") or " | " not in line: continue
            head, gloss = line.split(" | ", 1)
            f = head.split()
            n = int(f[3], 16)
            words = [f[4 + 2 * i].replace("_", " ") for i in range(n)]
            group.append(f"{', '.join(words)} ({pos}): {gloss.strip()}")
            if len(group) == 50:
                docs.append("\n".join(group)); group = []
        if group: docs.append("\n".join(group))
    step = max(1, round(sum(len(d) for d in docs) / (WORDNET_MB * 1e6)))
    return capped(docs[::step], WORDNET_MB)


def linux_doc():
    base = glob.glob(f"{R}/linux-doc-6.1/usr/share/doc/linux-doc-*/Documentation")[0]
    docs = []
    for path in sorted(glob.glob(base + "/**/*", recursive=True)):
        rel = os.path.relpath(path, base)
        if rel.startswith(("translations", "devicetree", "ABI", "output")) or os.path.isdir(path): continue
        if not path.endswith((".rst", ".rst.gz", ".txt", ".txt.gz")): continue
        docs.append(clean_rst(read(path)))
    return docs


def python_doc():
    base = glob.glob(f"{R}/python3.11-doc/usr/share/doc/python3.*/html/_sources")[0]
    return [clean_rst(read(p)) for p in sorted(glob.glob(base + "/**/*.txt", recursive=True))]


def html_dir(pattern, exclude=(), skip_classes=()):
    docs = []
    for p in sorted(glob.glob(pattern, recursive=True)):
        if any(x in p for x in exclude): continue
        docs += html_text(p, skip_classes).split("\x00")
    return [d.replace("\u00b6", "") for d in docs]


def manpages():
    docs = []
    for p in sorted(glob.glob(f"{WORK}/man/*.txt")):
        text = read(p)
        lines = text.split("\n")
        # drop the header/footer lines man adds ("LS(1)   User Commands   LS(1)")
        if lines and re.match(r"^\S+\(\w+\)\s", lines[0]): lines = lines[1:]
        while lines and not lines[-1].strip(): lines.pop()
        if lines and re.search(r"\S+\(\w+\)\s*$", lines[-1]): lines = lines[:-1]
        # man indents body text by 7 and headings by 3: drop that common margin
        lines = [re.sub(r"^ {1,7}", "", l) for l in lines]
        docs.append("\n".join(lines))
    return docs


def perl():
    return [read(p) for p in sorted(glob.glob(f"{WORK}/pod/*.txt"))]


def bible():
    base = glob.glob(f"{R}/sword-text-web/usr/share/sword/modules/texts/ztext/*/")[0]
    docs = []
    for testament in ("ot", "nt"):
        bzs = open(base + testament + ".bzs", "rb").read()
        bzz = open(base + testament + ".bzz", "rb").read()
        bzv = open(base + testament + ".bzv", "rb").read()
        blocks, chapter = {}, []
        for i in range(len(bzv) // 10):
            b, o, s = struct.unpack("<IIH", bzv[i * 10:i * 10 + 10])
            if s == 0: continue
            if b not in blocks:
                off, size, _ = struct.unpack("<III", bzs[b * 12:b * 12 + 12])
                blocks[b] = zlib.decompress(bzz[off:off + size])
            verse = blocks[b][o:o + s].decode("utf-8", "replace")
            if "<chapter " in verse and chapter:
                docs.append(" ".join(chapter)); chapter = []
            verse = re.sub(r"<note\b.*?</note>", "", verse, flags=re.S)
            verse = re.sub(r'<div [^>]*type="x-p"[^>]*/>', "\n", verse)
            verse = html.unescape(re.sub(r"<[^>]+>", "", verse))
            verse = re.sub(r"[ \t]+", " ", verse).strip(" ")
            if verse.strip(): chapter.append(verse)
        if chapter: docs.append(" ".join(chapter))
    return [re.sub(r" *\n *", "\n", d) for d in docs]


def r_unserialize(buf):
    # Minimal reader of R's XDR serialization (format 2/3), enough for character vectors with
    # attributes: returns nested Python lists/strings.
    pos = [0]

    def i32():
        v = struct.unpack(">i", buf[pos[0]:pos[0] + 4])[0]; pos[0] += 4; return v

    def item():
        flags = i32()
        t, has_attr, has_tag = flags & 0xFF, flags & (1 << 9), flags & (1 << 10)
        if t in (254, 242, 253, 251): return None  # NILVALUE, EMPTYENV, GLOBALENV, MISSINGARG
        if t == 255: return None  # REFSXP
        if t == 9:  # CHARSXP
            n = i32()
            if n == -1: return None
            s = buf[pos[0]:pos[0] + n].decode("utf-8", "replace"); pos[0] += n; return s
        if t == 1: return item()  # SYMSXP
        if t in (2, 19 + 1000):  # LISTSXP (pairlist)
            if has_attr: item()
            if has_tag: item()
            car = item(); cdr = item(); return [car] + (cdr if isinstance(cdr, list) else [])
        if t in (10, 13):  # LGLSXP, INTSXP
            n = i32(); pos[0] += 4 * n; v = None
        elif t == 14:  # REALSXP
            n = i32(); pos[0] += 8 * n; v = None
        elif t in (16, 19, 20):  # STRSXP, VECSXP, EXPRSXP
            n = i32(); v = [item() for _ in range(n)]
        else:
            raise ValueError(f"R type {t} not handled")
        if has_attr: item()
        return v

    assert buf[:2] == b"X\n", "not XDR"
    pos[0] = 2
    version = i32(); i32(); i32()
    if version == 3:
        n = i32(); pos[0] += n  # native encoding
    return item()


def austen():
    base = glob.glob(f"{R}/r-cran-janeaustenr/usr/lib/R/site-library/janeaustenr/data/Rdata.rdb")[0]
    rdb = open(base, "rb").read()
    docs, pos = [], 0
    while pos < len(rdb):
        n = struct.unpack(">I", rdb[pos:pos + 4])[0]
        d = zlib.decompressobj()
        raw = d.decompress(rdb[pos + 4:])
        used = len(rdb) - pos - 4 - len(d.unused_data)
        pos += 4 + used
        if len(raw) != n: continue
        try:
            v = r_unserialize(raw)
        except Exception:
            continue
        if isinstance(v, list) and len(v) > 1000 and all(isinstance(x, (str, type(None))) for x in v):
            # A novel: lines of text; chapters start with "CHAPTER"/"Chapter" lines.
            chapter = []
            for line in v:
                line = line or ""
                if re.match(r"^\s*(CHAPTER|Chapter) [\dIVXLC]+", line) and sum(len(l) for l in chapter) > 2000:
                    docs.append("\n".join(chapter)); chapter = []
                chapter.append(line)
            if chapter: docs.append("\n".join(chapter))
    return [re.sub(r"(?<!\n)\n(?!\n)", " ", d) for d in docs]  # unwrap hard-wrapped lines


def fortunes():
    docs = []
    for p in sorted(glob.glob(f"{R}/fortunes/usr/share/games/fortunes/*") + glob.glob(f"{R}/fortunes-min/usr/share/games/fortunes/*")):
        if p.endswith((".dat", ".u8")) or os.path.isdir(p): continue
        docs += [f for f in re.split(r"\n%\n", read(p))]
    return docs


def jargon():
    text = read(f"{R}/jargon-text/usr/share/doc/jargon-text/jargon.txt.gz")
    # Entries begin with ":headword:" at the start of a line.
    parts = re.split(r"\n(?=   :[^\n:]+:)", text)
    parts = [re.sub(r"(?m)^   ", "", p) for p in parts]  # the file indents everything by 3
    return ["\n".join(parts[i:i + 25]) for i in range(0, len(parts), 25)]


def git_doc():
    docs = []
    for p in sorted(glob.glob(f"{R}/git-doc/usr/share/doc/git-doc/**/*.txt", recursive=True)):
        text = read(p)
        text = re.sub(r"^(include|ifdef|endif|ifndef)::.*$", "", text, flags=re.M)
        text = re.sub(r"^[-=~^+.*]{4,}$", "", text, flags=re.M)
        text = re.sub(r"linkgit:([\w-]+)\[\d\]", r"\1", text)
        docs.append(text)
    return docs


SOURCES = [
    ("austen", austen), ("bible-web", bible), ("fortunes", fortunes), ("jargon", jargon),
    ("debian-handbook", lambda: html_dir(f"{R}/debian-handbook/usr/share/doc/debian-handbook/html/en-US/*.html")),
    ("rust-books", lambda: html_dir(f"{R}/rust-doc/usr/share/doc/rust-doc/html/**/print.html", exclude=("first-edition", "second-edition", "2018-edition"), skip_classes=("sidebar", "nav-chapters", "menu-bar"))),
    ("python-doc", python_doc), ("linux-doc", linux_doc), ("perl-doc", perl), ("manpages", manpages),
    ("postgresql-doc", lambda: html_dir(f"{R}/postgresql-doc-15/usr/share/doc/postgresql-doc-*/html/*.html", skip_classes=("navheader", "navfooter"))),
    ("django-doc", lambda: html_dir(f"{R}/python-django-doc/usr/share/doc/python-django-doc/html/**/*.html", exclude=("/_modules/", "/genindex", "/py-modindex", "/search.html"), skip_classes=("sphinxsidebar", "related", "nav"))),
    ("git-doc", git_doc), ("gcide", gcide), ("wordnet", wordnet),
]

only = os.environ.get("ONLY")
for name, fn in SOURCES:
    if only and name not in only.split(","): continue
    if done(name): continue
    write(name, fn())
PYEOF

echo "extract_corpus: writing $OUT" >&2
python3 "$WORK/extract.py" "$R" "$WORK" "$OUT"
echo "extract_corpus: done" >&2
du -b "$OUT"/*.txt | awk '{ printf "%10.2f MB  %s\n", $1 / 1e6, $2; total += $1 } END { printf "%10.2f MB  total\n", total / 1e6 }'
