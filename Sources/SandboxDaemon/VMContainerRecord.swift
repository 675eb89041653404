import Foundation
import OCI
import SystemCalls

/// What the runc command line remembers of a container it created in a VM, in
/// `<root>/<id>/vm.json` (a process-isolated container has `state.json` there instead).
public struct VMContainerRecord: Codable, Sendable, Equatable {
    public var id: String
    public var bundle: String
    public var rootfs: String
    public var created: String
    public var owner: String
    public var annotations: [String: String]?
    /// The sandbox the container runs in, and the daemon's run directory (its control socket).
    public var sandboxName: String
    public var runDirectory: String
    /// The daemon's control socket, under `--root` (records written before it existed: in the run directory).
    public var controlSocket: String?
    public var controlSocketPath: String { controlSocket ?? runDirectory + "/control.sock" }
    /// The daemon that holds the VM (pid and start time tell it from a recycled PID).
    public var daemonPID: Int32
    public var daemonStartTime: UInt64
    /// The host-side stand-in for the container's process: the PID `state` reports.
    public var standInPID: Int32
    public var standInStartTime: UInt64
    /// The container's cgroup on the host (absolute), holding its stand-in and, for the sandbox's first
    /// container, the daemon, QEMU and virtiofsd.
    public var hostCgroup: String?
    /// The transient systemd scope that made `hostCgroup` (`--systemd-cgroup`), stopped by delete.
    public var systemdUnit: String?
    /// The hooks that run on the host after create.
    public var poststart: [Hook]?
    public var poststop: [Hook]?

    public init(id: String, bundle: String, rootfs: String, created: String, owner: String, annotations: [String: String]?,
                sandboxName: String, runDirectory: String, daemonPID: Int32, daemonStartTime: UInt64,
                standInPID: Int32, standInStartTime: UInt64, poststart: [Hook]?, poststop: [Hook]?) {
        self.id = id
        self.bundle = bundle
        self.rootfs = rootfs
        self.created = created
        self.owner = owner
        self.annotations = annotations
        self.sandboxName = sandboxName
        self.runDirectory = runDirectory
        self.daemonPID = daemonPID
        self.daemonStartTime = daemonStartTime
        self.standInPID = standInPID
        self.standInStartTime = standInStartTime
        self.poststart = poststart
        self.poststop = poststop
    }

    public init(id: String, bundle: String, rootfs: String, created: String, owner: String, annotations: [String: String]?,
                sandboxName: String, runDirectory: String, daemonPID: Int32, daemonStartTime: UInt64,
                standInPID: Int32, standInStartTime: UInt64, controlSocket: String?, hostCgroup: String?,
                poststart: [Hook]?, poststop: [Hook]?) {
        self.init(id: id, bundle: bundle, rootfs: rootfs, created: created, owner: owner, annotations: annotations,
                  sandboxName: sandboxName, runDirectory: runDirectory, daemonPID: daemonPID, daemonStartTime: daemonStartTime,
                  standInPID: standInPID, standInStartTime: standInStartTime, poststart: poststart, poststop: poststop)
        self.controlSocket = controlSocket
        self.hostCgroup = hostCgroup
    }

    public var daemonIsAlive: Bool { ProcessInfoReader.startTime(pid: daemonPID) == daemonStartTime }
    public var standInIsAlive: Bool { ProcessInfoReader.startTime(pid: standInPID) == standInStartTime }
}

/// The records under `--root`, and the sandbox daemons' control sockets in `<root>/daemons`.
public struct VMContainerStore: Sendable {
    public let root: String
    public static let fileName = "vm.json"

    public init(root: String) { self.root = root }

    public var daemonsDirectory: String { root + "/" + Self.daemonsName }
    static let daemonsName = "daemons"

    /// Containers of either isolation share `--root` with the daemons' directory: its name is no id.
    public func checkNotReserved(_ id: String) throws(SandboxDaemonError) {
        if id == Self.daemonsName {
            throw SandboxDaemonError(.invalidArgument,
                "container id '\(id)' is reserved: \(daemonsDirectory) holds the sandbox daemons' control sockets")
        }
    }
    public func controlSocket(sandboxName: String) -> String { "\(daemonsDirectory)/\(sandboxName).sock" }

    public func directory(_ id: String) -> String { "\(root)/\(id)" }
    public func path(_ id: String) -> String { "\(directory(id))/\(Self.fileName)" }
    public func exists(_ id: String) -> Bool { Files.exists(path(id)) }

    public func save(_ record: VMContainerRecord) throws(SandboxDaemonError) {
        let path = path(record.id)
        do {
            let data = try JSONEncoder().encode(record)
            try data.write(to: URL(fileURLWithPath: path + ".tmp"))
            guard rename(path + ".tmp", path) == 0 else { throw SystemError("rename \(path)") }
        } catch {
            throw SandboxDaemonError(.internal, "save \(path): \(error)")
        }
    }

    public func load(_ id: String) throws(SandboxDaemonError) -> VMContainerRecord {
        let path = path(id)
        guard let data = FileManager.default.contents(atPath: path) else {
            throw SandboxDaemonError(.notFound, "container \(id) does not exist")
        }
        do {
            return try JSONDecoder().decode(VMContainerRecord.self, from: data)
        } catch {
            throw SandboxDaemonError(.dataLoss, "\(path) is corrupt: \(error)")
        }
    }

    public func list() -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: root)) ?? []).filter { exists($0) }.sorted()
    }
}
