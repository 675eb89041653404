import Foundation
import Logging
import PodNetwork
import Testing
import TestSupport

/// The host side of pod networking without a VM: what is read from the namespace, and that only what
/// cocoon added is ever removed.
@Suite(.serialized, .enabled(if: VethPair.unavailableReason == nil, Comment(rawValue: VethPair.unavailableReason ?? "")))
struct PodNetworkAttachTests {
    let logger = Logger(label: "test") { _ in SwiftLogNoOpLogHandler() }
    static let scratch = NSTemporaryDirectory()

    /// MAJOR:MINOR of a macvtap's character device, from a sysfs of its own namespace (`ip netns exec` mounts one).
    static func deviceNumber(namespace: String, link: String, index: Int32) -> String {
        VethPair.shell("ip netns exec \(namespace) cat /sys/class/net/\(link)/macvtap/tap\(index)/dev").1
            .trimmingCharacters(in: .whitespacesAndNewlines)
    }

    static func deviceNumber(of fd: Int32) -> String {
        var st = stat()
        guard fstat(fd, &st) == 0, (st.st_mode & S_IFMT) == S_IFCHR else { return "not a character device" }
        return "\(UInt32((st.st_rdev >> 8) & 0xfff)):\(UInt32((st.st_rdev & 0xff) | ((st.st_rdev >> 12) & 0xfff00)))"
    }

    @Test func macvtapModelTakesOverTheVethAndDetachRestoresIt() throws {
        let net = try VethPair(name: "cocoon-m\(getpid() % 10000)", subnet: 12)
        defer { net.destroy() }
        let before = net.podState()
        let network = try PodNetwork.attach(namespacePath: net.podPath, model: .macvtap, scratch: Self.scratch, logger: logger)
        let eth0 = try #require(network.interfaces.first)
        #expect(network.interfaces.count == 1 && eth0.name == "eth0" && eth0.tapName == "cocoon-mvt0")
        let details = VethPair.shell("ip -n \(net.pod) -d link show cocoon-mvt0").1
        #expect(details.contains("macvtap mode passthru") && details.contains(eth0.mac.description), "same MAC as eth0: \(details)")
        #expect(VethPair.shell("ip -n \(net.pod) -d link show eth0").1.contains("promiscuity 1"))
        #expect(VethPair.shell("tc -n \(net.pod) qdisc show dev eth0").1.contains("ingress") == false, "no tc in this model")
        // The descriptor is this namespace's macvtap, whatever /dev/tap<index> on the host may be.
        #expect(Self.deviceNumber(of: eth0.tapDescriptor) == Self.deviceNumber(namespace: net.pod, link: "cocoon-mvt0", index: eth0.tapIndex))
        #expect(Set(eth0.addresses.map(\.description)) == ["\(net.podV4)/24", "\(net.podV6)/64"])
        // Nothing mounted on the host, no scratch directory left.
        #expect(!((try? String(contentsOfFile: "/proc/self/mountinfo", encoding: .utf8)) ?? "").contains("macvtap0"))
        #expect(!FileManager.default.fileExists(atPath: Self.scratch + "/macvtap0"))
        network.detach()
        network.detach()
        #expect(net.podState() == before)
    }

    @Test func macvtapsWithTheSameIndexInTwoNamespacesEachGetTheirOwnDevice() throws {
        // ifindexes are per namespace: both macvtaps get the same one, and the host's /dev/tap<index>
        // can name only one of them.
        let a = try VethPair(name: "cocoon-x\(getpid() % 10000)", subnet: 13)
        defer { a.destroy() }
        let b = try VethPair(name: "cocoon-y\(getpid() % 10000)", subnet: 14)
        defer { b.destroy() }
        let first = try PodNetwork.attach(namespacePath: a.podPath, model: .macvtap, scratch: Self.scratch, logger: logger)
        defer { first.detach() }
        let second = try PodNetwork.attach(namespacePath: b.podPath, model: .macvtap, scratch: Self.scratch, logger: logger)
        defer { second.detach() }
        let one = try #require(first.interfaces.first), two = try #require(second.interfaces.first)
        #expect(one.tapIndex == two.tapIndex, "the test's premise: the same ifindex in both namespaces")
        #expect(Self.deviceNumber(of: one.tapDescriptor) == Self.deviceNumber(namespace: a.pod, link: "cocoon-mvt0", index: one.tapIndex))
        #expect(Self.deviceNumber(of: two.tapDescriptor) == Self.deviceNumber(namespace: b.pod, link: "cocoon-mvt0", index: two.tapIndex))
        #expect(Self.deviceNumber(of: one.tapDescriptor) != Self.deviceNumber(of: two.tapDescriptor))
    }

    @Test func aSecondMacvtapSandboxOnTheSameNamespaceIsRefused() throws {
        let net = try VethPair(name: "cocoon-z\(getpid() % 10000)", subnet: 15)
        defer { net.destroy() }
        let network = try PodNetwork.attach(namespacePath: net.podPath, model: .macvtap, scratch: Self.scratch, logger: logger)
        defer { network.detach() }
        let during = net.podState()
        let error = #expect(throws: PodNetworkError.self) {
            try PodNetwork.attach(namespacePath: net.podPath, model: .macvtap, scratch: Self.scratch, logger: logger)
        }
        #expect(error?.code == .alreadyExists && error?.message.contains("cocoon-mvt0") == true, "\(String(describing: error))")
        #expect(net.podState() == during, "the first sandbox's wiring is untouched")
    }

    @Test func attachCarriesWhatCNIConfiguredAndDetachRestoresIt() throws {
        let net = try VethPair(name: "cocoon-a\(getpid() % 10000)", subnet: 10)
        defer { net.destroy() }
        let before = net.podState()
        let network = try PodNetwork.attach(namespacePath: net.podPath, scratch: Self.scratch, logger: logger)
        let eth0 = try #require(network.interfaces.first)
        #expect(network.interfaces.count == 1 && eth0.name == "eth0" && eth0.tapName == "cocoon-tap0")
        #expect(Set(eth0.addresses.map(\.description)) == ["\(net.podV4)/24", "\(net.podV6)/64"], "no link-local address")
        // The default routes; not the ones the kernel made from the addresses.
        #expect(network.routes.map { "\($0.route.destination?.description ?? "default") \($0.route.gateway?.description ?? "")" }.sorted()
                == ["default \(net.peerV4)", "default \(net.peerV6)"])
        let filters = VethPair.shell("tc -n \(net.pod) filter show dev eth0 ingress").1
        #expect(filters.contains("Egress Redirect to device cocoon-tap0"), "\(filters)")
        network.detach()
        network.detach()
        #expect(net.podState() == before)
    }

    @Test func aQdiscSomeoneElseAddedIsRefusedAndKept() throws {
        let net = try VethPair(name: "cocoon-q\(getpid() % 10000)", subnet: 11)
        defer { net.destroy() }
        #expect(VethPair.shell("tc -n \(net.pod) qdisc add dev eth0 ingress").0 == 0)
        let before = net.podState()
        let error = #expect(throws: PodNetworkError.self) { try PodNetwork.attach(namespacePath: net.podPath, scratch: Self.scratch, logger: logger) }
        #expect(error?.code == .alreadyExists)
        #expect(error?.message.contains("eth0 already has an ingress qdisc") == true, "\(String(describing: error))")
        #expect(net.podState() == before, "the existing qdisc stays; no tap is left")
    }
}
