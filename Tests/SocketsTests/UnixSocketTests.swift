import Foundation
import Sockets
import SystemCalls
import Testing

/// Unix socket paths longer than sun_path: docker's and containerd's state roots put them there.
@Suite struct UnixSocketTests {
    static func temporaryDirectory(depth: Int) throws -> (top: String, leaf: String) {
        let top = NSTemporaryDirectory() + "cocoon-sock-\(getpid())-\(UUID().uuidString.prefix(8))"
        var leaf = top
        for i in 0..<depth { leaf += "/" + String(repeating: "d\(i)", count: 20) }
        try FileManager.default.createDirectory(atPath: leaf, withIntermediateDirectories: true)
        return (top, leaf)
    }

    @Test func aPathLongerThanSunPathIsBoundAndConnectedThroughItsDirectory() throws {
        let dirs = try Self.temporaryDirectory(depth: 5)
        defer { try? FileManager.default.removeItem(atPath: dirs.top) }
        let path = dirs.leaf + "/control.sock"
        #expect(path.utf8.count > StreamSocket.maxUnixPathLength)

        let listener = try StreamSocket.listenUnix(path: path)
        defer { listener.close() }
        // The socket is where the caller asked for it, root-only.
        var st = stat()
        #expect(lstat(path, &st) == 0 && (st.st_mode & S_IFMT) == S_IFSOCK)
        #expect(st.st_mode & 0o777 == 0o600)

        let client = try StreamSocket.connectUnix(path: path, until: .after(seconds: 5))
        defer { client.close() }
        let server = try StreamSocket.accept(listener, until: .after(seconds: 5))
        defer { server.close() }
        var byte: UInt8 = 42
        #expect(write(client.rawValue, &byte, 1) == 1)
        var got: UInt8 = 0
        #expect(read(server.rawValue, &got, 1) == 1 && got == 42)
        // No descriptor of the directory is left open behind the caller's back.
        let open = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd")) ?? []
        let toDirectory = open.compactMap { try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/fd/" + $0) }
        #expect(!toDirectory.contains(dirs.leaf))
    }

    @Test func aMissingDirectoryOrAnEmptyPathIsNamedInTheError() throws {
        let missing = "/nonexistent-cocoon-dir/" + String(repeating: "x", count: 120) + "/s.sock"
        #expect(throws: SystemError.self) { try StreamSocket.connectUnix(path: missing, until: .after(seconds: 0.1)) }
        do {
            _ = try StreamSocket.listenUnix(path: missing)
            Issue.record("listen on \(missing) succeeded")
        } catch {
            #expect(error.message.contains("/nonexistent-cocoon-dir/"), "\(error.message)")
        }
        do {
            _ = try StreamSocket.listenUnix(path: "")
            Issue.record("listen on an empty path succeeded")
        } catch {
            #expect(error.message.contains("empty"), "\(error.message)")
        }
    }

    @Test func aShortPathStillConnects() throws {
        let path = NSTemporaryDirectory() + "cocoon-s-\(getpid()).sock"
        defer { unlink(path) }
        let listener = try StreamSocket.listenUnix(path: path)
        defer { listener.close() }
        let client = try StreamSocket.connectUnix(path: path, until: .after(seconds: 5))
        client.close()
    }
}
