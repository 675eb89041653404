// swift-tools-version: 6.0
import PackageDescription

// Modules depend only downward:
//   CSupport <- SystemCalls <- Sockets, Processes, TTRPC, Mux <- Hypervisor, AgentAPI <- Sandbox <- executables
// The guest agent links only what it needs (no Foundation, no TOML, no argument parser) to keep /init small.
let package = Package(
    name: "cocoon",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "cocoon", targets: ["cocoon"]),
        .executable(name: "cocoon-agent", targets: ["cocoon-agent"]),
        .executable(name: "cocoon-init", targets: ["cocoon-init"]),
        .executable(name: "cocoon-bench", targets: ["cocoon-bench"]),
        .executable(name: "cocoon-swift-baseline", targets: ["cocoon-swift-baseline"]),
        .executable(name: "containerd-shim-cocoon-v2", targets: ["containerd-shim-cocoon-v2"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.6.0"),
        .package(url: "https://github.com/LebJe/TOMLKit", from: "0.6.0"),
        .package(url: "https://github.com/apple/swift-protobuf", from: "1.28.0"),
        // SHA-256 for the shim's socket address (containerd's naming); only the shim links it.
        .package(url: "https://github.com/apple/swift-crypto", from: "3.12.0"),
    ],
    targets: [
        // The one C target: syscalls and process-start code Swift cannot express safely.
        .target(name: "CSupport", linkerSettings: [.linkedLibrary("seccomp")]),
        // gRPC/ttrpc status codes shared by every module's error type.
        .target(name: "StatusCodes"),
        // Owned file descriptors, poll with deadlines, errno errors, threads.
        .target(name: "SystemCalls", dependencies: ["CSupport", "StatusCodes"]),
        // Unix and vsock stream sockets.
        .target(name: "Sockets", dependencies: ["SystemCalls", "CSupport"]),
        // ttrpc (containerd's RPC) client and server over any byte stream.
        .target(name: "TTRPC", dependencies: [
            "SystemCalls", "StatusCodes",
            .product(name: "SwiftProtobuf", package: "swift-protobuf"),
            .product(name: "Logging", package: "swift-log"),
        ]),
        // The proxy's framing: many flow-controlled channels over one byte stream (vsock or virtio-serial).
        .target(name: "Mux", dependencies: ["SystemCalls", "StatusCodes", .product(name: "Logging", package: "swift-log")]),
        // rtnetlink: links, addresses, routes, neighbours, tc redirects, taps; used by the host (pod
        // network into the VM) and by the agent (the guest's side of it).
        .target(name: "Netlink", dependencies: ["SystemCalls", "CSupport", "StatusCodes"]),
        // Spawning and supervising host child processes (QEMU, virtiofsd).
        .target(name: "Processes", dependencies: ["SystemCalls", "CSupport"]),
        // configuration.toml: loading, defaults, validation.
        .target(name: "Config", dependencies: ["StatusCodes", "Hypervisor", .product(name: "TOMLKit", package: "TOMLKit")]),
        // The QEMU driver: command line, QMP, acceleration choice, process supervision.
        .target(name: "Hypervisor", dependencies: [
            "AgentAPI", "SystemCalls", "Sockets", "Processes", .product(name: "Logging", package: "swift-log"),
        ]),
        // A D-Bus client (wire format, SASL EXTERNAL, calls and signals) for talking to systemd.
        .target(name: "DBus", dependencies: ["Sockets", "SystemCalls", "StatusCodes"]),
        // OCI runtime-spec types (config.json, state) with validation naming the JSON path of a bad field.
        .target(name: "OCI", dependencies: ["StatusCodes", "SystemCalls"]),
        // cgroup v2 (guest, modern hosts) and v1 (legacy and hybrid hosts): limits, freeze, stats.
        .target(name: "Cgroups", dependencies: ["OCI", "CSupport", "SystemCalls", "StatusCodes"]),
        // systemd's cgroup driver (--systemd-cgroup): containers' cgroups as transient scope units.
        .target(name: "Systemd", dependencies: ["DBus", "Cgroups", "OCI", "SystemCalls", "StatusCodes"]),
        // Containers from OCI bundles: namespaces, rootfs, mounts, credentials, the init handshake.
        // Shared by `cocoon` on bare metal and by the agent in the guest.
        .target(name: "LinuxContainer", dependencies: ["OCI", "Cgroups", "Systemd", "DBus", "CSupport", "SystemCalls", "Processes", "StatusCodes"]),
        // The host <-> agent protocol (messages, framing, client).
        .target(name: "AgentAPI", dependencies: [
            "SystemCalls", "StatusCodes", "TTRPC", "Mux",
            .product(name: "SwiftProtobuf", package: "swift-protobuf"),
            .product(name: "Logging", package: "swift-log"),
        ]),
        // The agent's logic: PID 1 duties, channel discovery, request handling.
        .target(name: "GuestAgent", dependencies: [
            "AgentAPI", "TTRPC", "Mux", "Sockets", "SystemCalls", "CSupport", "Processes", "LinuxContainer", "Cgroups", "OCI", "Netlink",
            "StatusCodes", .product(name: "Logging", package: "swift-log"),
        ]),
        // Pod networking on the host: taps and tc redirects in the pod's network namespace.
        .target(name: "PodNetwork", dependencies: ["Netlink", "SystemCalls", "StatusCodes", .product(name: "Logging", package: "swift-log")]),
        // The sandbox controller: boots the VM, owns the channel, tears everything down.
        .target(name: "Sandbox", dependencies: [
            "Config", "Hypervisor", "AgentAPI", "Mux", "OCI", "Sockets", "Processes", "StatusCodes", "PodNetwork", "Netlink",
            .product(name: "Logging", package: "swift-log"),
        ]),
        // VM isolation through the runc command line: the per-sandbox daemon that holds a VM between
        // `cocoon` commands, its API, and the host-side stand-in processes.
        .target(name: "SandboxDaemon", dependencies: [
            "Sandbox", "AgentAPI", "Config", "OCI", "Cgroups", "Systemd", "LinuxContainer", "Mux", "TTRPC", "Processes", "SystemCalls", "CSupport", "StatusCodes",
            .product(name: "SwiftProtobuf", package: "swift-protobuf"),
            .product(name: "Logging", package: "swift-log"),
        ]),
        // containerd's shim, task, events and cgroup-metrics messages, generated from its own protos.
        .target(name: "ContainerdAPI", dependencies: [.product(name: "SwiftProtobuf", package: "swift-protobuf")]),
        // containerd runtime v2 shim: start/delete, the Task service over ttrpc, stdio, events, pods.
        .target(name: "Shim", dependencies: [
            "ContainerdAPI", "Sandbox", "Config", "OCI", "TTRPC", "AgentAPI", "Sockets", "SystemCalls", "Processes",
            "LinuxContainer", "CSupport", "StatusCodes",
            .product(name: "SwiftProtobuf", package: "swift-protobuf"),
            .product(name: "Crypto", package: "swift-crypto"),
            .product(name: "Logging", package: "swift-log"),
        ]),
        // `cocoon check`: host requirements with fix hints.
        .target(name: "HostCheck", dependencies: ["CSupport", "Config", "Hypervisor", "Processes", "SystemCalls"]),
        .executableTarget(name: "cocoon", dependencies: [
            "Config", "Sandbox", "SandboxDaemon", "HostCheck", "Hypervisor", "AgentAPI", "LinuxContainer", "OCI", "Cgroups", "CSupport", "Processes", "Sockets", "SystemCalls",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
            .product(name: "Logging", package: "swift-log"),
        ]),
        .executableTarget(name: "cocoon-init", dependencies: ["LinuxContainer"]),
        .executableTarget(name: "containerd-shim-cocoon-v2", dependencies: ["Shim"]),
        .executableTarget(name: "cocoon-agent", dependencies: [
            "GuestAgent", .product(name: "Logging", package: "swift-log"),
        ]),
        // make bench-boot: the smallest static Swift /init, the floor under the agent's boot.
        .executableTarget(name: "cocoon-swift-baseline", dependencies: ["CSupport"]),
        .executableTarget(name: "cocoon-bench", dependencies: [
            "Config", "Sandbox", "Hypervisor", "OCI", "SystemCalls",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
            .product(name: "Logging", package: "swift-log"),
        ]),
        // Helpers shared by the test targets.
        .target(name: "TestSupport", path: "Tests/TestSupport"),
        .testTarget(name: "ConfigTests", dependencies: ["Config"]),
        .testTarget(name: "OCITests", dependencies: ["OCI"]),
        .testTarget(name: "CgroupsTests", dependencies: ["Cgroups", "OCI", "SystemCalls"]),
        .testTarget(name: "DBusTests", dependencies: ["DBus", "Sockets", "SystemCalls", "TestSupport"]),
        .testTarget(name: "SystemdTests", dependencies: ["Systemd", "DBus", "Cgroups", "OCI"]),
        .testTarget(name: "LinuxContainerTests", dependencies: ["LinuxContainer", "OCI"]),
        .testTarget(name: "HypervisorTests", dependencies: ["Hypervisor", "Config"]),
        .testTarget(name: "AgentAPITests", dependencies: [
            "AgentAPI", "GuestAgent", "Mux", "TTRPC", "OCI", "Sockets", "SystemCalls", "TestSupport", "Netlink",
            .product(name: "SwiftProtobuf", package: "swift-protobuf"),
            .product(name: "Logging", package: "swift-log"),
        ]),
        .testTarget(name: "SandboxTests", dependencies: [
            "Sandbox", "Config", "Hypervisor", "OCI", "SystemCalls", "TestSupport", "PodNetwork",
            .product(name: "Logging", package: "swift-log"),
        ]),
        .testTarget(name: "HostCheckTests", dependencies: ["HostCheck", "Config", "Hypervisor"]),
        .testTarget(name: "TTRPCTests", dependencies: [
            "TTRPC", "Sockets", "SystemCalls", "Processes", "TestSupport",
            .product(name: "SwiftProtobuf", package: "swift-protobuf"),
            .product(name: "Logging", package: "swift-log"),
        ]),
        .testTarget(name: "NetlinkTests", dependencies: ["Netlink"]),
        .testTarget(name: "SocketsTests", dependencies: ["Sockets", "SystemCalls"]),
        .testTarget(name: "MuxTests", dependencies: ["Mux", "Sockets", "SystemCalls", .product(name: "Logging", package: "swift-log")]),
        .testTarget(name: "ShimTests", dependencies: [
            "Shim", "ContainerdAPI", "TTRPC", "Sockets", "SystemCalls", "TestSupport", "containerd-shim-cocoon-v2",
            .product(name: "SwiftProtobuf", package: "swift-protobuf"),
            .product(name: "Logging", package: "swift-log"),
        ]),
        .testTarget(name: "ProcessesTests", dependencies: ["Processes", "SystemCalls"]),
        // Runs the built `cocoon` executable; depends on it so `swift test` builds it first.
        .testTarget(name: "CLITests", dependencies: ["cocoon", "TestSupport"]),
        .testTarget(name: "SandboxDaemonTests", dependencies: ["SandboxDaemon"]),
        .testTarget(name: "ContainerTests", dependencies: ["cocoon", "cocoon-init", "CSupport", "Config", "Sockets", "SystemCalls", "TestSupport"]),
    ]
)
