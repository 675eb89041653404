import Foundation
import Logging
import Processes
import Sockets
import SwiftProtobuf
import SystemCalls
import TTRPC

/// containerd's Go ttrpc library as an independent peer: tests/peers/ttrpc-go built with Debian's Go.
enum GoPeer {
    static let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().deletingLastPathComponent().path
    static let source = "\(repository)/tests/peers/ttrpc-go/main.go"
    static let libraryPath = "/usr/share/gocode/src/github.com/containerd/ttrpc"

    /// Why the peer cannot be built here, or nil when it can.
    static let unavailableReason: String? = {
        if !FileManager.default.isExecutableFile(atPath: "/usr/bin/go") {
            return "Go is not installed (make deps installs golang-go)"
        }
        if !FileManager.default.fileExists(atPath: libraryPath) {
            return "containerd's Go ttrpc library is not installed (make deps installs golang-github-containerd-ttrpc-dev)"
        }
        return nil
    }()

    /// Built once, cached by the hash of its source under /var/cache/cocoon (COCOON_CACHE_DIR).
    static let binary: Result<String, Error> = Result {
        let (hashStatus, hashOutput) = try ChildProcess.run("/usr/bin/sha256sum", [source])
        guard hashStatus == .exited(0), let hash = hashOutput.split(separator: " ").first else {
            throw PeerError("cannot hash \(source): \(hashOutput)")
        }
        let cache = ProcessInfo.processInfo.environment["COCOON_CACHE_DIR"] ?? "/var/cache/cocoon"
        let dir = "\(cache)/ttrpc-go/\(hash.prefix(16))"
        let out = "\(dir)/ttrpc-go"
        if FileManager.default.isExecutableFile(atPath: out) { return out }
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        var options = ChildProcess.Options()
        options.environment = ["GO111MODULE": "off", "GOPATH": "/usr/share/gocode", "GOCACHE": "\(cache)/go-build",
                               "HOME": dir, "PATH": "/usr/bin:/bin", "GOFLAGS": ""]
        // Built beside the final name and renamed, so a parallel run never sees half a binary.
        let partial = "\(out).\(getpid())"
        let (status, output) = try ChildProcess.run("/usr/bin/go", ["build", "-o", partial, source],
                                                    options: options, input: [], timeout: 300)
        guard status == .exited(0) else { throw PeerError("go build of \(source) failed (\(status)): \(output)") }
        guard rename(partial, out) == 0 else { throw PeerError("cannot rename \(partial) to \(out)") }
        return out
    }

    /// Starts the Go server on a fresh socket; the caller terminates it.
    static func startServer() throws -> (ChildProcess, String) {
        let path = "/tmp/cocoon-ttrpc-\(getpid())-\(UInt32.random(in: 0...UInt32.max)).sock"
        let process = try ChildProcess.spawn(try binary.get(), ["server", path])
        let deadline = Deadline.after(seconds: 20)
        while !FileManager.default.fileExists(atPath: path) {
            if deadline.hasPassed || process.poll() != nil {
                process.kill()
                throw PeerError("the Go ttrpc server did not start listening on \(path)")
            }
            usleep(10_000)
        }
        return (process, path)
    }

    /// Runs the Go client's checks against a server at `path`; one line per check.
    static func runClient(against path: String) throws -> [String: String] {
        let (status, output) = try ChildProcess.run(try binary.get(), ["client", path], timeout: 60)
        guard status == .exited(0) else { throw PeerError("Go ttrpc client failed (\(status)): \(output)") }
        var results: [String: String] = [:]
        for line in output.split(separator: "\n") {
            let parts = line.split(separator: " ", maxSplits: 1)
            results[String(parts[0])] = parts.count > 1 ? String(parts[1]) : ""
        }
        return results
    }
}

struct PeerError: Error, CustomStringConvertible {
    let description: String
    init(_ d: String) { description = d }
}

let testLogger = Logger(label: "ttrpc-test") { _ in SwiftLogNoOpLogHandler() }
