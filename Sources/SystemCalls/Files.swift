#if canImport(Glibc)
import Glibc
#endif

/// Small file helpers that work without Foundation (the agent links FoundationEssentials only).
public enum Files {
    public static func exists(_ path: String) -> Bool { access(path, F_OK) == 0 }

    public static func isExecutable(_ path: String) -> Bool {
        var st = stat()
        return stat(path, &st) == 0 && (st.st_mode & S_IFMT) == S_IFREG && access(path, X_OK) == 0
    }

    public static func readString(_ path: String, limit: Int = 1 << 20) throws(SystemError) -> String {
        let fd = try FileDescriptor.open(path, O_RDONLY)
        var out: [UInt8] = []
        while out.count < limit {
            let chunk = try fd.readNow(upTo: min(65536, limit - out.count))
            if chunk.isEmpty { break }
            out += chunk
        }
        return String(decoding: out, as: UTF8.self)
    }

    public static func writeString(_ path: String, _ text: String, mode: mode_t = 0o644) throws(SystemError) {
        let fd = try FileDescriptor.open(path, O_WRONLY | O_CREAT | O_TRUNC, mode: mode)
        try fd.writeAll(Array(text.utf8), until: .after(seconds: 10))
    }

    /// mkdir -p.
    public static func makeDirectories(_ path: String, mode: mode_t = 0o755) throws(SystemError) {
        var current = path.hasPrefix("/") ? "" : "."
        for part in path.split(separator: "/") {
            current += "/" + part
            if mkdir(current, mode) != 0 && errno != EEXIST {
                throw SystemError("mkdir \(current)")
            }
        }
    }

    /// rm -rf, without following symlinks out of the tree.
    /// Removes a directory tree without crossing into other filesystems or bind mounts: a mount
    /// left under it (a container's rootfs shared into a VM) must never have its contents deleted.
    public static func removeTree(_ path: String) {
        var st = stat()
        guard lstat(path, &st) == 0 else { return }
        let mounts = Set(mountPoints(under: path))
        removeTree(path, device: st.st_dev, skipping: mounts)
    }

    private static func removeTree(_ path: String, device: dev_t, skipping mounts: Set<String>) {
        var st = stat()
        guard lstat(path, &st) == 0 else { return }
        if (st.st_mode & S_IFMT) == S_IFDIR {
            guard st.st_dev == device, !mounts.contains(path) else { return }
            for entry in entries(path) { removeTree(path + "/" + entry.name, device: device, skipping: mounts) }
            rmdir(path)
        } else {
            unlink(path)
        }
    }

    /// Mount points at or below `path`, from /proc/self/mountinfo.
    public static func mountPoints(under path: String) -> [String] {
        let text = (try? readString("/proc/self/mountinfo", limit: 16 << 20)) ?? ""
        return text.split(separator: "\n").compactMap { line -> String? in
            let fields = line.split(separator: " ")
            guard fields.count > 4 else { return nil }
            let point = String(fields[4]).replacing("\\040", with: " ")
            return point == path || point.hasPrefix(path + "/") ? point : nil
        }
    }

    public static func readLink(_ path: String) throws(SystemError) -> String {
        var buffer = [CChar](repeating: 0, count: 4097)
        let n = readlink(path, &buffer, 4096)
        guard n >= 0 else { throw SystemError("readlink \(path)") }
        return String(decoding: buffer[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// The last `count` lines of a text file, for error messages (reads at most the last 64 KiB).
    public static func tailLines(_ path: String, count: Int) -> [String] {
        guard let fd = try? FileDescriptor.open(path, O_RDONLY) else { return [] }
        var st = stat()
        guard fstat(fd.rawValue, &st) == 0 else { return [] }
        let size = Int(st.st_size)
        let start = max(0, size - 65536)
        lseek(fd.rawValue, off_t(start), SEEK_SET)
        var bytes: [UInt8] = []
        while let chunk = try? fd.readNow(upTo: 65536), !chunk.isEmpty { bytes += chunk }
        let text = String(decoding: bytes, as: UTF8.self).replacingCarriageReturns()
        var lines = text.split(separator: "\n", omittingEmptySubsequences: true).map(String.init)
        if start > 0 && !lines.isEmpty { lines.removeFirst() }  // likely a partial line
        return Array(lines.suffix(count))
    }
}

extension String {
    fileprivate func replacingCarriageReturns() -> String {
        String(self.unicodeScalars.filter { $0 != "\r" }.map(Character.init))
    }
}

/// Writes text to fd 2 in one write(2) (no stdio buffering, no shared FILE state).
public func writeToStandardError(_ text: String) {
    var bytes = Array(text.utf8)
    var offset = 0
    while offset < bytes.count {
        let n = bytes.withUnsafeMutableBytes { write(2, $0.baseAddress! + offset, $0.count - offset) }
        if n < 0 && errno == EINTR { continue }
        if n <= 0 { return }
        offset += n
    }
}

extension Files {
    /// The entries of a directory (without "." and ".."), with their d_type; empty if unreadable.
    public static func entries(_ path: String) -> [(name: String, isDirectory: Bool)] {
        guard let dir = opendir(path) else { return [] }
        defer { closedir(dir) }
        var result: [(name: String, isDirectory: Bool)] = []
        while let entry = readdir(dir) {
            let name = withUnsafePointer(to: entry.pointee.d_name) {
                String(cString: UnsafeRawPointer($0).assumingMemoryBound(to: CChar.self))
            }
            if name != "." && name != ".." { result.append((name, entry.pointee.d_type == UInt8(DT_DIR))) }
        }
        return result
    }

    /// Names of the directories directly inside `path` (not following symlinks).
    public static func subdirectories(_ path: String) -> [String] {
        entries(path).filter(\.isDirectory).map(\.name)
    }
}
