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
generate Sources/SandboxDaemon/Generated Public Protos/daemon Protos/daemon/daemon.proto
# containerd's own protos (Debian's golang-github-containerd-containerd-dev and -cgroups-dev), for
# the shim: the Task service, the events it forwards and the cgroup v2 metrics. Two of them are
# called task.proto, so file names keep their path here.
gocode=/usr/share/gocode/src
containerd=$gocode/github.com/containerd/containerd
if [ ! -d "$containerd/runtime/v2/task" ] || [ ! -d "$gocode/github.com/gogo/protobuf/gogoproto" ]; then
    echo "containerd protos not found: apt-get install golang-github-containerd-containerd-dev golang-github-containerd-cgroups-dev golang-github-gogo-protobuf-dev" >&2
    exit 1
fi
out=Sources/ContainerdAPI/Generated
rm -rf "$out" && mkdir -p "$out"
protoc --plugin=protoc-gen-swift="$plugin" -I "$gocode" -I "$gocode/github.com/gogo/protobuf" -I /usr/include \
    --swift_opt=Visibility=Public --swift_opt=FileNaming=PathToUnderscores --swift_out="$out" \
    github.com/containerd/containerd/runtime/v2/task/shim.proto \
    github.com/containerd/containerd/api/types/mount.proto \
    github.com/containerd/containerd/api/types/task/task.proto \
    github.com/containerd/containerd/api/events/task.proto \
    github.com/containerd/containerd/api/services/ttrpc/events/v1/events.proto \
    github.com/containerd/cgroups/v2/stats/metrics.proto
# Shorter names for the committed files.
for f in "$out"/github.com_containerd_*; do mv "$f" "$out/${f#"$out"/github.com_containerd_}"; done
echo "generated Swift from Protos/ and containerd's protos" >&2
