import Foundation
@testable import Sandbox
import SystemCalls
import Testing

/// The host side of the shared directory against a hostile guest, which can write the shared tree.
@Suite(.enabled(if: geteuid() == 0, "bind mounts need root"))
struct SharedFilesTests {
    @Test func aPlantedSymlinkCannotRedirectABind() throws {
        let base = "/run/cocoon-test-shared-\(getpid())"
        let shared = base + "/shared"
        let source = base + "/source"
        let victim = base + "/victim"
        for dir in [source, victim] { try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true) }
        try "from the source\n".write(toFile: source + "/file", atomically: true, encoding: .utf8)
        try SharedFiles.prepare(shared)
        defer {
            SharedFiles.unmountAll(under: base)
            Files.removeTree(base)
        }
        // What a compromised guest could do before the host adds container "c2".
        try FileManager.default.createSymbolicLink(atPath: shared + "/c2", withDestinationPath: victim)
        let error = #expect(throws: SandboxError.self) {
            try SharedFiles.bind(source, at: shared + "/c2/rootfs", sharedRoot: shared, readOnly: false)
        }
        #expect(error?.code == .permissionDenied)
        #expect(Files.mountPoints(under: victim).isEmpty, "nothing was mounted through the symlink")
        #expect((try? FileManager.default.contentsOfDirectory(atPath: victim)) == [], "nothing was created through it")

        // The ordinary case still works, read-only included.
        try SharedFiles.bind(source, at: shared + "/c1/rootfs", sharedRoot: shared, readOnly: true)
        #expect((try? String(contentsOfFile: shared + "/c1/rootfs/file", encoding: .utf8)) == "from the source\n")
        #expect(!FileManager.default.createFile(atPath: shared + "/c1/rootfs/new", contents: Data()), "read-only")
        try SharedFiles.bind(source + "/file", at: shared + "/c1/mounts/0", sharedRoot: shared, readOnly: false)
        #expect((try? String(contentsOfFile: shared + "/c1/mounts/0", encoding: .utf8)) == "from the source\n")
        SharedFiles.unmountAll(under: shared + "/c1")
        #expect(Files.mountPoints(under: shared + "/c1").isEmpty)
    }
}
