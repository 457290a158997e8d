# SPDX-License-Identifier: Apache-2.0
# Sourced by the tests that need a package from the npm registry (kafkajs,
# s3rver): npm_pinned NAME SRC DEST installs the versions pinned in
# SRC/package.json and SRC/package-lock.json into DEST/NAME with `npm ci`,
# only when the lock file changed or nothing is there, and sets $js to
# DEST/NAME. Exits the test with 77 (skip) when node or npm is missing or
# the registry cannot be reached on a first install, 1 when npm ci fails
# otherwise.
npm_pinned() { # name src dest
    local name=$1 src=$2 dest=$3
    if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
        echo "node or npm missing (scripts/deps test installs them): skipping"
        exit 77
    fi
    js=$dest/$name
    mkdir -p "$js"
    if cmp -s "$src/package-lock.json" "$js/package-lock.json" &&
        [ -f "$js/node_modules/$name/package.json" ]; then
        return 0
    fi
    cp "$src/package.json" "$src/package-lock.json" "$js/"
    if ! (cd "$js" && npm ci --no-audit --no-fund --loglevel=error >npm.log 2>&1); then
        cat "$js/npm.log" >&2
        rm -f "$js/package-lock.json" # try again next time
        if grep -qE 'ENOTFOUND|EAI_AGAIN|ECONNREFUSED|ETIMEDOUT|network' "$js/npm.log"; then
            echo "the npm registry cannot be reached: skipping"
            exit 77
        fi
        echo "FAIL: npm ci" >&2
        exit 1
    fi
}
