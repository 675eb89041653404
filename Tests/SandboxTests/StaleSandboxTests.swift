import Foundation
import Logging
import PodNetwork
import Sandbox
import SystemCalls
import Testing
import TestSupport

/// Leftovers of a controller that was killed: swept at the next boot, without touching what the
/// mounts pointed at.
@Suite(.enabled(if: geteuid() == 0, "bind mounts need root"))
struct StaleSandboxTests {
    @Test func sweepRemovesOnlyDeadOwnersAndNeverFollowsMounts() throws {
        let root = "/run/cocoon-test-stale-\(getpid())"
        let source = NSTemporaryDirectory() + "cocoon-stale-source-\(getpid())"
        try FileManager.default.createDirectory(atPath: source, withIntermediateDirectories: true)
        try "precious\n".write(toFile: source + "/data.txt", atomically: true, encoding: .utf8)
        defer {
            try? FileManager.default.removeItem(atPath: root)
            try? FileManager.default.removeItem(atPath: source)
        }
        func sandbox(_ name: String, owner: String?) throws -> String {
            let dir = "\(root)/sandboxes/\(name)"
            try FileManager.default.createDirectory(atPath: dir + "/shared/c1/rootfs", withIntermediateDirectories: true)
            if let owner { try owner.write(toFile: dir + "/owner", atomically: true, encoding: .utf8) }
            return dir
        }
        let dead = try sandbox("dead", owner: "2147483000 12345\n")
        #expect(mount(source, dead + "/shared/c1/rootfs", nil, UInt(MS_BIND), nil) == 0)
        let me = "\(getpid()) \(ProcessInfoReader.startTime(pid: getpid()) ?? 0)\n"
        let live = try sandbox("live", owner: me)
        let recycled = try sandbox("recycled", owner: "\(getpid()) 1\n")
        let unowned = try sandbox("being-created", owner: nil)

        let removed = StaleSandboxes.sweep(root: root)
        #expect(Set(removed) == ["dead", "recycled"])
        #expect(!FileManager.default.fileExists(atPath: dead))
        #expect(!FileManager.default.fileExists(atPath: recycled), "a PID reused by another process is not the owner")
        #expect(FileManager.default.fileExists(atPath: live))
        #expect(FileManager.default.fileExists(atPath: unowned))
        #expect(Files.mountPoints(under: root).isEmpty)
        #expect((try? String(contentsOfFile: source + "/data.txt", encoding: .utf8)) == "precious\n", "the mount's source is untouched")
    }

    @Test(.enabled(if: VethPair.unavailableReason == nil, Comment(rawValue: VethPair.unavailableReason ?? "")),
          arguments: [PodNetwork.Model.tcfilter, .macvtap])
    func aDeadControllersNetworkWiringIsRemoved(model: PodNetwork.Model) throws {
        let net = try VethPair(name: "cocoon-s\(model == .tcfilter ? "t" : "m")\(getpid() % 10000)", subnet: model == .tcfilter ? 8 : 16)
        defer { net.destroy() }
        let before = net.podState()
        // One root per case: the cases run in parallel, and a shared root let one case's sweep take the
        // other's record.
        let root = "/run/cocoon-test-stale-net-\(model)-\(getpid())"
        let dir = root + "/sandboxes/dead"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: root) }
        try "2147483000 12345\n".write(toFile: dir + "/owner", atomically: true, encoding: .utf8)
        let network = try PodNetwork.attach(namespacePath: net.podPath, model: model, scratch: dir,
                                            logger: Logger(label: "test") { _ in SwiftLogNoOpLogHandler() })
        network.record(to: dir + "/network")
        #expect(net.podState().contains(model == .tcfilter ? "ingress" : "cocoon-mvt0"))
        // What dies with a killed controller: its descriptors, so the tap; the veth's qdisc, or the
        // macvtap, stays.
        for iface in network.interfaces { close(iface.tapDescriptor) }
        #expect(net.podState() != before)
        #expect(StaleSandboxes.sweep(root: root) == ["dead"])
        #expect(net.podState() == before, "the pod namespace is as CNI (here: the test) made it")
    }
}
