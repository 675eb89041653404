#!/usr/bin/env bash
# Regenerates the committed Swift code from the project's .proto files (make protos).
# protoc-gen-swift is built from the same swift-protobuf the package resolves, so the generated
# code always matches the runtime library it is compiled against.
set -euo pipefail
cd "$(dirname "$0")/.."

command -v protoc >/dev/null || { echo "protoc not found: apt-get install protobuf-compiler" >&2; exit 1; }
scratch=.build-protoc
swift build -c release --product protoc-gen-swift --scratch-path "$scratch" >&2
plugin="$scratch/release/protoc-gen-swift"

generate() { # generate OUT_DIR VISIBILITY PROTO_ROOT FILE...
    local out=$1 visibility=$2 root=$3; shift 3
    mkdir -p "$out"
    protoc --plugin=protoc-gen-swift="$plugin" -I "$root" -I /usr/include \
        --swift_opt=Visibility="$visibility" --swift_opt=FileNaming=DropPath \
        --swift_out="$out" "$@"
}

generate Sources/TTRPC/Generated Public Protos/ttrpc Protos/ttrpc/ttrpc.proto
if [ -d Protos/agent ]; then
    generate Sources/AgentAPI/Generated Public Protos/agent Protos/agent/*.proto
fi
echo "generated Swift from Protos/" >&2
