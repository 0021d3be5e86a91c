#!/usr/bin/env bash
# Regenerates fixtures/goldens/bm25-bright.json and bm25-cranfield.json by running BRIGHT's BM25
# code path (pyserini's Lucene analyzer + gensim, see scripts/make_bm25_goldens.py).
# Needs Debian's Java 17 (apt-get install openjdk-17-jdk-headless) and network access to PyPI the
# first time (a ~140 MB pyserini wheel). The virtual environment is /.venv-bm25 (git-ignored).
# Extra arguments go to the script (e.g. --dump DIR to also write every token of the sweep).
set -euo pipefail
cd "$(dirname "$0")/.."
export JAVA_HOME="${JAVA_HOME:-/usr/lib/jvm/java-17-openjdk-amd64}"
if [ ! -x "$JAVA_HOME/bin/java" ]; then
    echo "no Java at JAVA_HOME=$JAVA_HOME: apt-get install openjdk-17-jdk-headless" >&2
    exit 1
fi
venv="${VENV:-.venv-bm25}"
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install -r scripts/requirements-bm25-golden.txt
    "$venv/bin/pip" install --no-deps pyserini==0.22.1
fi
exec "$venv/bin/python" scripts/make_bm25_goldens.py "$@"
