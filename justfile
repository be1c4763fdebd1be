# berth — event-sourced control plane. `just` lists the recipes.

default:
    @just --list --unsorted

# Run the whole control plane: own nats-server and Postgres under .berth/, sim provider, demo tenant, dashboard
up *flags: dashboard
    cargo run --quiet -p berth -- up {{flags}}

# Build the web dashboard (npm packages pinned in web/dashboard/package-lock.json)
dashboard:
    #!/usr/bin/env bash
    set -euo pipefail
    cd web/dashboard
    if [ ! -d node_modules ] || [ package-lock.json -nt node_modules ]; then npm ci --no-audit --no-fund; fi
    npm run build --silent

# Run every test against real nats-server and Postgres; ends with one summary line
test *flags: dashboard
    #!/usr/bin/env bash
    set -euo pipefail
    log=$(mktemp)
    trap 'rm -f "$log"' EXIT
    cargo test --workspace {{flags}} 2>&1 | tee "$log"
    awk '/^test result:/ { passed += $4; failed += $6 } END { printf "%d passed, %d failed\n", passed, failed }' "$log"

# Speed next to raw JetStream on this machine (release build)
bench *flags: fuzz
    cargo run --release --quiet -p berth-tests --bin berth-bench -- {{flags}}

# Every command decoder under a million property-test cases (part of `just bench`)
fuzz cases="1000000":
    PROPTEST_CASES={{cases}} cargo test --release --quiet -p berth-schemas --test fuzz_decoders

# The berth CLI, e.g. `just berth vm list`
berth *args:
    cargo run --quiet -p berth -- {{args}}

# Format the code
fmt:
    cargo fmt --all

# Formatting, clippy (warnings are errors) and cargo deny
lint: && deny
    cargo fmt --all -- --check
    cargo clippy --workspace --all-targets -- -D warnings

# cargo deny (deny.toml): licenses, bans, sources; advisories when the RustSec database is at hand
deny:
    #!/usr/bin/env bash
    set -euo pipefail
    cargo deny check --hide-inclusion-graph licenses bans sources
    db="${CARGO_HOME:-$HOME/.cargo}/advisory-dbs"
    if timeout 120 cargo deny fetch db 2>/dev/null || ls "$db"/*/crates >/dev/null 2>&1; then
      cargo deny --offline check --hide-inclusion-graph advisories
    else
      echo "cargo deny: advisories skipped: the RustSec database cannot be fetched here and $db holds no copy"
    fi

# Everything CI runs but the tests: `just lint`, the crate rules of docs/architecture.md, then the generated schemas must not drift
check: lint schemas
    #!/usr/bin/env bash
    set -euo pipefail
    python3 infra/check-crate-deps.py
    git diff --exit-code -- schemas
    untracked=$(git ls-files --others --exclude-standard -- schemas)
    [ -z "$untracked" ] || { echo "untracked under schemas/ (commit or remove it): $untracked"; exit 1; }

# Regenerate schemas/json and schemas/asyncapi.yaml from the Rust types
schemas:
    BERTH_WRITE_SCHEMAS=1 cargo test --quiet -p berth-schemas --lib checked_in_

# Remove the embedded servers' data (.berth/)
clean-data:
    rm -rf .berth
