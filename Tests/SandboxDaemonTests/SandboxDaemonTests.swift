import Foundation
import Testing
@testable import SandboxDaemon

/// The parts of the runc command line's VM mode that need no VM.
struct SandboxNameTests {
    @Test func namesFitTheRunDirectorysSocketPathsAndDifferBetweenRoots() {
        let id = String(repeating: "a", count: 64)
        let name = VMRuntime.sandboxName(root: "/run/docker/runtime-cocoon/moby", id: id)
        #expect(name.count == 32)
        #expect(name.hasPrefix(String(repeating: "a", count: 23) + "-"))
        #expect(name == VMRuntime.sandboxName(root: "/run/docker/runtime-cocoon/moby", id: id), "stable across calls")
        #expect(name != VMRuntime.sandboxName(root: "/run/containerd/runc/default", id: id), "another root, another sandbox")
        #expect(VMRuntime.sandboxName(root: "/r", id: "c1").hasPrefix("c1-"))
        // <runtime.root>/sandboxes/<name>/virtiofs.sock with the default root stays far below 107 bytes.
        #expect(("/run/cocoon/sandboxes/" + name + "/virtiofs.sock").utf8.count < 107)
    }

    @Test func containerIDsFollowTheSandboxRule() {
        #expect(throws: SandboxDaemonError.self) { try VMRuntime.validate(id: "../escape") }
        #expect(throws: SandboxDaemonError.self) { try VMRuntime.validate(id: "-x") }
        #expect(throws: SandboxDaemonError.self) { try VMRuntime.validate(id: String(repeating: "a", count: 129)) }
        #expect(throws: Never.self) { try VMRuntime.validate(id: "b80bf635c707ce8a9d8c4ac13cca4650bfc9e356315510575abd93224205c212") }
    }
}

struct SyncLineTests {
    @Test func errorLinesKeepTheirStatusCode() {
        let e = VMRuntime.reported("error 5 container x does not exist", what: "create", orElse: "gone")
        #expect(e.code == .notFound)
        #expect(e.message == "container x does not exist")
        let silent = VMRuntime.reported("", what: "create", orElse: "the stand-in ended without an answer")
        #expect(silent.code == .unavailable && silent.message.contains("without an answer"))
        let garbage = VMRuntime.reported("error nine lives", what: "create", orElse: "gone")
        #expect(garbage.code == .unavailable && garbage.message.contains("unexpected answer"))
    }
}

struct VMContainerStoreTests {
    @Test func recordsRoundTripAndACorruptOneIsNamed() throws {
        let root = NSTemporaryDirectory() + "cocoon-vmstore-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: root) }
        let store = VMContainerStore(root: root)
        try FileManager.default.createDirectory(atPath: store.directory("c1"), withIntermediateDirectories: true)
        let record = VMContainerRecord(
            id: "c1", bundle: "/b", rootfs: "/b/rootfs", created: "2026-11-23T00:00:00Z", owner: "", annotations: ["a": "b"],
            sandboxName: "c1-00000000", runDirectory: "/run/cocoon/sandboxes/c1-00000000", daemonPID: 1, daemonStartTime: 2,
            standInPID: 3, standInStartTime: 4, controlSocket: store.controlSocket(sandboxName: "c1-00000000"),
            hostCgroup: "/cocoon/c1", poststart: nil, poststop: nil)
        try store.save(record)
        #expect(try store.load("c1") == record)
        #expect(record.controlSocketPath == root + "/daemons/c1-00000000.sock")
        // The daemons' directory holds no record: not a container.
        try FileManager.default.createDirectory(atPath: store.daemonsDirectory, withIntermediateDirectories: true)
        #expect(store.list() == ["c1"])
        #expect(throws: SandboxDaemonError.self) { try store.load("missing") }
        try Data("{".utf8).write(to: URL(fileURLWithPath: store.path("c1")))
        do {
            _ = try store.load("c1")
            Issue.record("a corrupt record loaded")
        } catch {
            #expect(error.code == .dataLoss && error.message.contains(store.path("c1")))
        }
    }

    @Test func theDaemonsDirectoryIsNoContainerID() {
        let store = VMContainerStore(root: "/run/x")
        #expect(throws: SandboxDaemonError.self) { try store.checkNotReserved("daemons") }
        #expect(throws: Never.self) { try store.checkNotReserved("daemons-1") }
    }

    @Test func aRecordFromBeforeControlSocketsMovedStillFindsItsDaemon() throws {
        // Written by an earlier cocoon: no controlSocket, the socket is in the run directory.
        let json = """
            {"id":"c1","bundle":"/b","rootfs":"/b/rootfs","created":"x","owner":"","sandboxName":"c1-0",
             "runDirectory":"/run/cocoon/sandboxes/c1-0","daemonPID":1,"daemonStartTime":2,"standInPID":3,"standInStartTime":4}
            """
        let record = try JSONDecoder().decode(VMContainerRecord.self, from: Data(json.utf8))
        #expect(record.controlSocketPath == "/run/cocoon/sandboxes/c1-0/control.sock")
    }
}
