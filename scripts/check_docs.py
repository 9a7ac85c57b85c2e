#!/usr/bin/env python3
"""The docs checks CI runs (scripts/check_docs.sh): every relative link of README.md and of the
book's pages (docs/*.md) names a file that exists and, for a Markdown page, a heading that
exists in it; every page of docs/ is in docs/SUMMARY.md; README.md stays short. Standard
library only; exits non-zero with one line per problem."""
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README_MAX_LINES = 200
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def slug(heading):
    s = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return s.replace(" ", "-")


def anchors(path):
    out, fence = set(), False
    for line in open(path, encoding="utf-8"):
        if line.startswith("```"):
            fence = not fence
        elif not fence and re.match(r"^#{1,6} ", line):
            out.add(slug(line.lstrip("#")))
    return out


def links(path):
    fence = False
    for n, line in enumerate(open(path, encoding="utf-8"), 1):
        if line.startswith("```"):
            fence = not fence
            continue
        if fence:
            continue
        for m in LINK.finditer(re.sub(r"`[^`]*`", "", line)):
            yield n, m.group(1)


def check_page(path, problems):
    here = os.path.dirname(path)
    rel = os.path.relpath(path, ROOT)
    for n, target in links(path):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):
            continue  # https:, mailto:
        file, _, anchor = target.partition("#")
        dest = os.path.normpath(os.path.join(here, file)) if file else path
        if not os.path.exists(dest):
            problems.append(f"{rel}:{n}: the link {target} names {os.path.relpath(dest, ROOT)}, "
                            "which does not exist")
        elif anchor and dest.endswith(".md") and anchor not in anchors(dest):
            problems.append(f"{rel}:{n}: the link {target} names a heading that "
                            f"{os.path.relpath(dest, ROOT)} does not have")


def main():
    problems = []
    docs = os.path.join(ROOT, "docs")
    pages = sorted(f for f in os.listdir(docs) if f.endswith(".md"))
    for page in pages:
        check_page(os.path.join(docs, page), problems)
    check_page(os.path.join(ROOT, "README.md"), problems)
    listed = {t.partition("#")[0] for _, t in links(os.path.join(docs, "SUMMARY.md"))}
    for page in pages:
        if page != "SUMMARY.md" and page not in listed:
            problems.append(f"docs/{page} is not in docs/SUMMARY.md, so the book leaves it out")
    lines = sum(1 for _ in open(os.path.join(ROOT, "README.md"), encoding="utf-8"))
    if lines > README_MAX_LINES:
        problems.append(f"README.md has {lines} lines, more than {README_MAX_LINES}: move the "
                        "details to a page of the book in docs/")
    for p in problems:
        print(p)
    print(f"check_docs: {len(pages)} pages, README {lines} lines, {len(problems)} problems")
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
