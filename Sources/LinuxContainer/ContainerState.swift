#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
#if canImport(Glibc)
import Glibc
#endif
import OCI
import SystemCalls

/// What the runtime remembers about a container, in `<root>/<id>/state.json`.
public struct ContainerRecord: Codable, Sendable, Equatable {
    public var id: String
    public var bundle: String
    public var rootfs: String
    public var pid: Int32
    /// The init process's start time (field 22 of /proc/PID/stat): tells a live container from a
    /// recycled PID.
    public var pidStartTime: UInt64
    public var created: String
    public var annotations: [String: String]?
    public var owner: String
    /// The cgroup path from the hierarchy root.
    public var cgroupPath: String?
    /// The hooks that run after create (poststart, poststop), as config.json had them at create.
    public var poststart: [Hook]?
    public var poststop: [Hook]?
    /// The transient scope unit holding the container under --systemd-cgroup (stopped at delete).
    public var systemdUnit: String? = nil
}

/// The state directory: one folder per container, mode 0700.
public struct StateStore: Sendable {
    public let root: String

    public init(root: String) { self.root = root }

    public func directory(_ id: String) -> String { "\(root)/\(id)" }
    public func fifoPath(_ id: String) -> String { "\(directory(id))/exec.fifo" }

    public static func validate(id: String) throws(LinuxContainerError) {
        let allowed = Set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_+-.")
        guard !id.isEmpty, id.count <= 1024, id.allSatisfy(allowed.contains), id != ".", id != ".." else {
            throw LinuxContainerError(.invalidArgument, step: "container id",
                "'\(id)' is invalid: use letters, digits, '_', '+', '-' and '.'")
        }
    }

    public func save(_ record: ContainerRecord) throws(LinuxContainerError) {
        let path = directory(record.id) + "/state.json"
        do {
            let data = try JSONEncoder().encode(record)
            try data.write(to: URL(fileURLWithPath: path + ".tmp"))
            guard rename(path + ".tmp", path) == 0 else { throw SystemError("rename \(path)") }
        } catch {
            throw LinuxContainerError(step: "save state", "\(path): \(error)")
        }
    }

    public func load(_ id: String) throws(LinuxContainerError) -> ContainerRecord {
        try Self.validate(id: id)
        let path = directory(id) + "/state.json"
        guard let data = FileManager.default.contents(atPath: path) else {
            throw LinuxContainerError(.notFound, step: "", "container \(id) does not exist")
        }
        do {
            return try JSONDecoder().decode(ContainerRecord.self, from: data)
        } catch {
            throw LinuxContainerError(.dataLoss, step: "load state", "\(path) is corrupt: \(error)")
        }
    }

    public func list() -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: root)) ?? [])
            .filter { FileManager.default.fileExists(atPath: directory($0) + "/state.json") }
            .sorted()
    }
}
