/// One line of /proc/<pid>/mountinfo (proc(5)): the fields cocoon needs.
public struct MountTableEntry: Sendable, Equatable {
    /// The directory of the mounted file system that appears at `mountPoint` ("/" unless a bind).
    public let root: String
    public let mountPoint: String
    /// Per-mount options (rw, ro, nosuid, ...).
    public let options: [String]
    public let fileSystemType: String
    public let source: String
    /// Per-superblock options: for cgroup v1 these name the hierarchy's controllers.
    public let superOptions: [String]

    public init(root: String, mountPoint: String, options: [String], fileSystemType: String, source: String, superOptions: [String]) {
        self.root = root
        self.mountPoint = mountPoint
        self.options = options
        self.fileSystemType = fileSystemType
        self.source = source
        self.superOptions = superOptions
    }
}

public enum MountTable {
    /// The calling process's mounts, in mount order.
    public static func current() -> [MountTableEntry] {
        parse((try? Files.readString("/proc/self/mountinfo", limit: 16 << 20)) ?? "")
    }

    /// Lines that do not have the fields proc(5) documents are skipped.
    public static func parse(_ text: String) -> [MountTableEntry] {
        text.split(separator: "\n").compactMap { line in
            let fields = line.split(separator: " ", omittingEmptySubsequences: false).map(String.init)
            // id parent major:minor root mount-point options [optional fields...] - type source super-options
            guard fields.count >= 10, let dash = fields[6...].firstIndex(of: "-"), dash + 3 < fields.count else { return nil }
            return MountTableEntry(root: unescape(fields[3]), mountPoint: unescape(fields[4]),
                                   options: fields[5].split(separator: ",").map(String.init),
                                   fileSystemType: fields[dash + 1], source: unescape(fields[dash + 2]),
                                   superOptions: fields[dash + 3].split(separator: ",").map(String.init))
        }
    }

    /// The kernel writes space, tab, newline and backslash in paths as three octal digits.
    static func unescape(_ field: String) -> String {
        guard field.contains("\\") else { return field }
        var bytes: [UInt8] = []
        let raw = Array(field.utf8)
        var i = 0
        while i < raw.count {
            if raw[i] == UInt8(ascii: "\\"), i + 3 < raw.count,
               let value = UInt8(String(decoding: raw[(i + 1)...(i + 3)], as: UTF8.self), radix: 8) {
                bytes.append(value)
                i += 4
            } else {
                bytes.append(raw[i])
                i += 1
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}
