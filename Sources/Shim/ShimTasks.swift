import ContainerdAPI
import Foundation
import OCI
import SwiftProtobuf

/// One process containerd knows: a container's init process (exec id "") or an exec.
final class ShimProcess: @unchecked Sendable {
    let containerID: String
    let execID: String
    let stdin: String
    let stdout: String
    let stderr: String
    let terminal: Bool
    /// The exec's process (nil for the init process, whose process is in config.json).
    let spec: OCI.Process?
    // The rest is guarded by the service's state lock.
    var pid: Int32 = 0
    var status: Containerd_V1_Types_Status = .created
    var exitStatus: UInt32 = 0
    var exitedAt: Date?
    var io: ProcessIO?
    /// Serialises start against the exit report, so that containerd sees start before exit.
    let startLock = NSLock()

    init(containerID: String, execID: String, stdin: String, stdout: String, stderr: String, terminal: Bool, spec: OCI.Process?) {
        self.containerID = containerID
        self.execID = execID
        self.stdin = stdin
        self.stdout = stdout
        self.stderr = stderr
        self.terminal = terminal
        self.spec = spec
    }

    var exitTimestamp: Google_Protobuf_Timestamp {
        exitedAt.map { Google_Protobuf_Timestamp(date: $0) } ?? Google_Protobuf_Timestamp()
    }
}

/// A container containerd created through this shim, in the pod's VM.
final class ShimContainer: @unchecked Sendable {
    let id: String
    let bundle: String
    /// `<bundle>/rootfs` when this shim mounted containerd's rootfs mounts there.
    let mountedRootfs: String?
    let initProcess: ShimProcess
    var execs: [String: ShimProcess] = [:]
    var paused = false
    /// The guest's OOM-kill count for the container when last looked at (an increase is a TaskOOM).
    var oomKills: UInt64 = 0
    /// The spec's host hooks (poststart, poststop still to run) and where they run.
    var hooks: Hooks?
    var rootfs = ""
    var networkNamespace: String?
    var created = ""
    var annotations: [String: String]?

    init(id: String, bundle: String, mountedRootfs: String?, initProcess: ShimProcess) {
        self.id = id
        self.bundle = bundle
        self.mountedRootfs = mountedRootfs
        self.initProcess = initProcess
    }
}
