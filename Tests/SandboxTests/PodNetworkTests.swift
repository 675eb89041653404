import Foundation
import Config
import OCI
import Sandbox
import SystemCalls
import Testing
import TestSupport

/// Pod networking in real VMs: the VM takes over a network namespace made by the test.
extension SandboxBootTests {
    static var networkReason: String? { cocoon == nil ? "the cocoon binary is not built next to the tests" : VethPair.unavailableReason }

    static func useNetworkNamespace(_ path: String, in spec: inout Spec) {
        let namespaces = spec.linux?.namespaces ?? []
        spec.linux?.namespaces = namespaces.map { $0.type == .network ? OCI.Namespace(type: .network, path: path) : $0 }
    }

    /// `cocoon run` of a bundle whose config.json names the pod namespace; the test talks to the container
    /// over stdin and stdout while it runs.
    final class Running: @unchecked Sendable {
        let process = Foundation.Process()
        let stdin = Pipe(), stdout = Pipe(), stderr = Pipe()
        private(set) var seen = ""

        init(cocoon: String, root: String, bundle: String, id: String, config: String? = nil) throws {
            process.executableURL = URL(fileURLWithPath: cocoon)
            process.arguments = (config.map { ["--config", $0] } ?? []) + ["--root", root, "run", "--bundle", bundle, id]
            process.standardInput = stdin
            process.standardOutput = stdout
            process.standardError = stderr
            try process.run()
        }

        /// Reads stdout until `text` appeared (true) or the deadline passed.
        func waitFor(_ text: String, seconds: Double = 90) -> Bool {
            let deadline = Deadline.after(seconds: seconds)
            while !seen.contains(text) && !deadline.hasPassed && process.isRunning {
                seen += String(decoding: stdout.fileHandleForReading.availableData, as: UTF8.self)
            }
            return seen.contains(text)
        }

        func finish(input: String) -> (Int32, String, String) {
            try? stdin.fileHandleForWriting.write(contentsOf: Data(input.utf8))
            try? stdin.fileHandleForWriting.close()
            seen += String(decoding: stdout.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            let err = String(decoding: stderr.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            process.waitUntilExit()
            return (process.terminationStatus, seen, err)
        }
    }

    /// The tests' configuration with `runtime.network_model` set.
    func configuration(networkModel: NetworkModel) throws -> String {
        let c = env.configuration
        let path = NSTemporaryDirectory() + "cocoon-test-\(networkModel.rawValue)-\(getpid()).toml"
        try """
            [hypervisor]
            path = "\(c.hypervisor.path)"
            kernel = "\(c.hypervisor.kernel)"
            initrd = "\(c.hypervisor.initrd)"
            image = "\(c.hypervisor.image)"
            boot_from = "\(c.hypervisor.bootFrom.rawValue)"
            virtiofsd = "\(c.hypervisor.virtiofsd)"
            machine = "\(c.hypervisor.machine.rawValue)"
            accel = "\(c.hypervisor.accel.rawValue)"
            boot_timeout_seconds = \(Int(c.hypervisor.bootTimeoutSeconds))
            [runtime]
            root = "\(c.runtime.root)"
            \(c.runtime.initBinary.map { "init = \"\($0)\"" } ?? "")
            network_model = "\(networkModel.rawValue)"

            """.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    @Test(.enabled(if: networkReason == nil, Comment(rawValue: networkReason ?? "")), arguments: [NetworkModel.tcfilter, .macvtap])
    func aVMContainerTakesOverThePodNamespace(model: NetworkModel) throws {
        let net = try VethPair(name: "cocoon-t\(model == .tcfilter ? "t" : "m")\(getpid() % 10000)", subnet: model == .tcfilter ? 5 : 17)
        defer { net.destroy() }
        let before = net.podState()
        let www = NSTemporaryDirectory() + "cocoon-www-\(model.rawValue)-\(getpid())"
        try FileManager.default.createDirectory(atPath: www, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: www) }
        try "from-the-peer\n".write(toFile: www + "/index.html", atomically: true, encoding: .utf8)
        try net.serve(www)

        // The container fetches from the peer (v4, v6), then serves a page of its own until stdin ends.
        let script = """
            ip -o addr show dev eth0; ip route; ip -6 route
            wget -q -O - http://\(net.peerV4):8080/ || echo v4-fetch-failed
            wget -q -O - http://[\(net.peerV6)]:8080/ || echo v6-fetch-failed
            mkdir -p /tmp/www && echo from-the-vm > /tmp/www/index.html && httpd -p 8080 -h /tmp/www && echo serving
            read -t 120 line; echo bye
            """
        let dir = try bundle(["sh", "-c", script]) { spec in
            Self.useNetworkNamespace(net.podPath, in: &spec)
            // The root is read-only in runc's default spec; the page goes to a tmpfs.
            spec.mounts = (spec.mounts ?? []) + [Mount(destination: "/tmp", type: "tmpfs", source: "tmpfs", options: ["nosuid", "nodev", "mode=1777"])]
        }
        let config = try configuration(networkModel: model)
        defer { try? FileManager.default.removeItem(atPath: config) }
        let id = "net-pod-\(model.rawValue)"
        let run = try Running(cocoon: try #require(Self.cocoon), root: env.configuration.runtime.root, bundle: dir, id: id, config: config)
        let up = run.waitFor("serving")
        if up {
            let (v4Status, v4) = net.inPeer("timeout 30 busybox wget -q -O - http://\(net.podV4):8080/")
            #expect(v4Status == 0 && v4 == "from-the-vm\n", "the peer reached the VM over IPv4: \(v4)")
            let (v6Status, v6) = net.inPeer("timeout 30 busybox wget -q -O - http://[\(net.podV6)]:8080/")
            #expect(v6Status == 0 && v6 == "from-the-vm\n", "the peer reached the VM over IPv6: \(v6)")
        }
        let (status, out, err) = run.finish(input: "done\n")
        #expect(up, "the container started its server: \(out) \(err)")
        #expect(status == 0, "stderr: \(err)")
        // The guest's eth0 has the pod's addresses and routes, and the pages came across both ways.
        #expect(out.contains("inet \(net.podV4)/24"), "\(out)")
        #expect(out.contains("inet6 \(net.podV6)/64"), "\(out)")
        #expect(out.contains("default via \(net.peerV4) dev eth0"), "\(out)")
        #expect(out.contains("default via \(net.peerV6) dev eth0"), "\(out)")
        #expect(out.components(separatedBy: "from-the-peer\n").count == 3, "both fetches from the peer: \(out)")
        #expect(out.hasSuffix("bye\n"))
        expectNoSharingLeft(id)
        // The taps and tc filters (or the macvtap) are gone; the veth and its addresses are as the test made them.
        #expect(net.podState() == before)
    }

    @Test(.enabled(if: networkReason == nil, Comment(rawValue: networkReason ?? "")))
    func withoutANamespacePathTheContainerHasLoopbackOnly() throws {
        // runc's default spec: a new network namespace, no path. The VM gets no NIC.
        let dir = try bundle(["sh", "-c", "ip -o link | grep -c ether; ip -o addr show dev lo | grep -c 127.0.0.1; ls /sys/class/net; exit 0"])
        let (status, out, _) = try cocoonRun("net-none", bundle: dir, input: nil)
        #expect(status == 0, "\(out)")
        #expect(out.hasPrefix("0\n1\n"), "\(out)")
        #expect(!out.contains("eth"))
        expectNoSharingLeft("net-none")
    }

    @Test(.enabled(if: networkReason == nil, Comment(rawValue: networkReason ?? "")))
    func aNamespaceThatCannotBeCarriedFailsCleanly() throws {
        let net = try VethPair(name: "cocoon-b\(getpid() % 10000)", subnet: 6)
        defer { net.destroy() }
        // A layer-3 tun device: no Ethernet frames to redirect.
        #expect(VethPair.shell("ip -n \(net.pod) tuntap add dev tun9 mode tun && ip -n \(net.pod) link set tun9 up").0 == 0)
        let before = net.podState()
        let dir = try bundle(["true"]) { spec in
            Self.useNetworkNamespace(net.podPath, in: &spec)
        }
        let (status, _, err) = try cocoonRun("net-bad", bundle: dir, input: nil)
        #expect(status == 1)
        #expect(err.contains("interface tun9") && err.contains("not an Ethernet device"), "\(err)")
        expectNothingLeft("net-bad")
        #expect(net.podState() == before, "nothing added to the namespace stays")

        let gone = try bundle(["true"]) { spec in
            Self.useNetworkNamespace("/var/run/netns/cocoon-no-such-ns", in: &spec)
        }
        let (goneStatus, _, goneErr) = try cocoonRun("net-gone", bundle: gone, input: nil)
        #expect(goneStatus == 1)
        #expect(goneErr.contains("/var/run/netns/cocoon-no-such-ns"), "\(goneErr)")
        expectNothingLeft("net-gone")
    }
}
