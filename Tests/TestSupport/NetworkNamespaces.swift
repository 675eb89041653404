import Foundation

/// Two network namespaces made by a test, joined by a veth pair, with addresses from the
/// benchmarking ranges (198.18.0.0/15, 2001:2::/48) only: "peer" plays the outside world,
/// "pod" is what CNI would hand a pod. iproute2 and busybox are the independent tools here.
public final class VethPair: @unchecked Sendable {
    public let peer: String
    public let pod: String
    public let subnet: Int
    public var peerV4: String { "198.18.\(subnet).1" }
    public var podV4: String { "198.18.\(subnet).2" }
    public var peerV6: String { "2001:2:0:\(subnet)::1" }
    public var podV6: String { "2001:2:0:\(subnet)::2" }
    public var podPath: String { "/var/run/netns/\(pod)" }
    private var servers: [Process] = []

    /// Why these tests cannot run here, or nil.
    public static var unavailableReason: String? {
        if geteuid() != 0 { return "network namespaces need root" }
        if !FileManager.default.isExecutableFile(atPath: "/usr/sbin/ip") && !FileManager.default.isExecutableFile(atPath: "/sbin/ip") {
            return "iproute2 is not installed (make deps)"
        }
        if !FileManager.default.isExecutableFile(atPath: "/bin/busybox") { return "busybox-static is not installed (make deps)" }
        return nil
    }

    /// `podInterface` is the name the pod side gets (CNI's usual eth0).
    public init(name: String, subnet: Int, podInterface: String = "eth0") throws {
        peer = "\(name)-peer"
        pod = "\(name)-pod"
        self.subnet = subnet
        for ns in [peer, pod] { _ = Self.shell("ip netns del \(ns) 2>/dev/null") }
        let setup = """
            set -e
            ip netns add \(peer); ip netns add \(pod)
            ip link add cv-peer netns \(peer) type veth peer name \(podInterface) netns \(pod)
            ip -n \(peer) link set lo up; ip -n \(peer) link set cv-peer up; ip -n \(pod) link set \(podInterface) up
            ip -n \(peer) addr add \(peerV4)/24 dev cv-peer; ip -n \(pod) addr add \(podV4)/24 dev \(podInterface)
            ip -n \(peer) addr add \(peerV6)/64 dev cv-peer nodad; ip -n \(pod) addr add \(podV6)/64 dev \(podInterface) nodad
            ip -n \(pod) route add default via \(peerV4)
            ip -n \(pod) -6 route add default via \(peerV6)
            """
        let (status, output) = Self.shell(setup)
        guard status == 0 else {
            destroy()
            throw NSError(domain: "VethPair", code: Int(status), userInfo: [NSLocalizedDescriptionKey: "setting up \(name): \(output)"])
        }
    }

    /// An HTTP server in the peer namespace serving `directory` on port 8080 (v4 and v6).
    public func serve(_ directory: String) throws {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/sbin/ip")
        p.arguments = ["netns", "exec", peer, "/bin/busybox", "httpd", "-f", "-p", "8080", "-h", directory]
        p.standardOutput = FileHandle.nullDevice
        p.standardError = FileHandle.nullDevice
        try p.run()
        servers.append(p)
        usleep(200_000)
    }

    /// Runs a shell command in the peer namespace; (status, stdout and stderr).
    public func inPeer(_ command: String) -> (Int32, String) { Self.shell("ip netns exec \(peer) sh -c '\(command)'") }

    /// What the pod namespace holds: its links (names) and its qdiscs, to compare before and after.
    public func podState() -> String {
        // Names and promiscuity (1 while a macvtap in passthru mode sits on the veth). Only stdout: `ip -d`
        // warns "Peer netns reference is invalid" while another test's namespace is being deleted.
        let links = Self.shell("ip -n \(pod) -d -o link show 2>/dev/null | sed -E 's/^[0-9]+: ([^:]+):.* promiscuity ([0-9]+) .*/\\1 \\2/'").1
        let qdiscs = Self.shell("tc -n \(pod) qdisc show 2>/dev/null").1
        let addresses = Self.shell("ip -n \(pod) -o addr show 2>/dev/null | awk '{print $2, $4}'").1
        return links + qdiscs + addresses
    }

    public func destroy() {
        // SIGKILL: a child of the test process may inherit a mask that blocks SIGTERM.
        for s in servers where s.isRunning {
            kill(s.processIdentifier, SIGKILL)
            s.waitUntilExit()
        }
        servers.removeAll()
        for ns in [peer, pod] { _ = Self.shell("ip netns del \(ns) 2>/dev/null") }
    }

    @discardableResult
    public static func shell(_ command: String) -> (Int32, String) {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/bin/sh")
        p.arguments = ["-c", command]
        let out = Pipe()
        p.standardOutput = out
        p.standardError = out
        do { try p.run() } catch { return (-1, "\(error)") }
        let data = out.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return (p.terminationStatus, String(decoding: data, as: UTF8.self))
    }
}
