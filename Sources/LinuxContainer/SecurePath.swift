#if canImport(Glibc)
import Glibc
#endif

/// Resolves a path inside a root directory the way the container will see it: `..` and symlinks,
/// absolute or relative, are followed but can never leave `root`. Used for every path taken from
/// config.json before the runtime mounts or writes there, so a hostile image cannot point
/// a mount at the host.
public enum SecurePath {
    public static let maxSymlinks = 255

    public static func join(root: String, _ path: String) throws(LinuxContainerError) -> String {
        let root = root.count > 1 && root.hasSuffix("/") ? String(root.dropLast()) : root
        var pending = components(path)
        var resolved: [String] = []
        var links = 0
        while !pending.isEmpty {
            let part = pending.removeFirst()
            if part == "." { continue }
            if part == ".." {
                if !resolved.isEmpty { resolved.removeLast() }
                continue
            }
            let candidate = root + "/" + (resolved + [part]).joined(separator: "/")
            var st = stat()
            if lstat(candidate, &st) != 0 || (st.st_mode & S_IFMT) != S_IFLNK {
                // Missing components are created later by the caller, inside root.
                resolved.append(part)
                continue
            }
            links += 1
            guard links <= maxSymlinks else {
                throw LinuxContainerError(.invalidArgument, step: "resolve \(path)", "too many levels of symbolic links")
            }
            var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
            let n = readlink(candidate, &buffer, Int(PATH_MAX))
            guard n >= 0 else { throw LinuxContainerError(step: "readlink \(candidate)", String(cString: strerror(errno))) }
            let target = String(decoding: buffer[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
            if target.hasPrefix("/") { resolved = [] }
            pending = components(target) + pending
        }
        return resolved.isEmpty ? root : root + "/" + resolved.joined(separator: "/")
    }

    static func components(_ path: String) -> [String] {
        path.split(separator: "/", omittingEmptySubsequences: true).map(String.init)
    }
}
