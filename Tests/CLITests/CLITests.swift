import Foundation
import Testing
import TestSupport

/// The `cocoon` executable as a user runs it.
@Suite(.serialized) struct CLITests {
    static var binary: String? { BuiltProducts.path(of: "cocoon") }

    static var vmReady: Bool {
        guard let path = ProcessInfo.processInfo.environment["COCOON_CONFIG"],
              let text = try? String(contentsOfFile: path, encoding: .utf8) else { return false }
        return geteuid() == 0 && text.contains("kernel") && FileManager.default.fileExists(atPath: "/usr/bin/qemu-system-x86_64")
    }

    func run(_ args: [String], environment: [String: String]? = nil) throws -> (Int32, String, String) {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: try #require(Self.binary))
        p.arguments = args
        if let environment { p.environment = environment }
        let out = Pipe(), err = Pipe()
        p.standardOutput = out
        p.standardError = err
        try p.run()
        let o = out.fileHandleForReading.readDataToEndOfFile()
        let e = err.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return (p.terminationStatus, String(decoding: o, as: UTF8.self), String(decoding: e, as: UTF8.self))
    }

    func writeTemp(_ text: String) throws -> String {
        let path = NSTemporaryDirectory() + "cocoon-cli-\(getpid())-\(UUID().uuidString).toml"
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    @Test(.enabled(if: binary != nil, "the cocoon binary is not built next to the tests: run `swift build` first"))
    func version() throws {
        let (status, out, _) = try run(["--version"])
        #expect(status == 0)
        #expect(out.hasPrefix("cocoon version "))
    }

    @Test(.enabled(if: binary != nil, "the cocoon binary is not built next to the tests: run `swift build` first"))
    func featuresDescribeWhatIsImplemented() throws {
        let (status, out, _) = try run(["features"])
        #expect(status == 0)
        let doc = try #require(try JSONSerialization.jsonObject(with: Data(out.utf8)) as? [String: Any])
        #expect(doc["ociVersionMin"] as? String == "1.0.0")
        #expect((doc["hooks"] as? [String])?.count == 6)
        #expect((doc["mountOptions"] as? [String])?.contains("rbind") == true)
        let linux = try #require(doc["linux"] as? [String: Any])
        #expect((linux["namespaces"] as? [String])?.contains("user") == true)
        #expect((linux["capabilities"] as? [String])?.last == "CAP_CHECKPOINT_RESTORE")
        let seccomp = try #require(linux["seccomp"] as? [String: Any])
        #expect(seccomp["enabled"] as? Bool == true)
        #expect((seccomp["actions"] as? [String])?.contains("SCMP_ACT_NOTIFY") == false, "not claimed: refused at create")
        #expect((linux["cgroup"] as? [String: Any])?["systemd"] as? Bool == true)
    }

    @Test(.enabled(if: binary != nil, "the cocoon binary is not built next to the tests: run `swift build` first"))
    func badConfigurationNamesFileAndKey() throws {
        let path = try writeTemp("[hypervisor]\nmachine = \"virt\"\n")
        defer { try? FileManager.default.removeItem(atPath: path) }
        let (status, _, err) = try run(["--config", path, "check"])
        #expect(status != 0)
        #expect(err.contains(path))
        #expect(err.contains("hypervisor.machine"))
        #expect(err.contains("microvm, q35, pc"))
    }

    @Test(.enabled(if: binary != nil, "the cocoon binary is not built next to the tests: run `swift build` first"))
    func checkFailsWithFixHintsWhenTheGuestIsMissing() throws {
        let path = try writeTemp("[hypervisor]\nkernel = \"/nonexistent/vmlinux\"\n")
        defer { try? FileManager.default.removeItem(atPath: path) }
        let (status, out, _) = try run(["--config", path, "check"])
        #expect(status == 1)
        #expect(out.contains("[FAIL] guest kernel: /nonexistent/vmlinux not found -- fix: make kernel"))
        #expect(out.contains("QEMU"))
        #expect(out.contains("cgroups"))
    }

    @Test(.enabled(if: binary != nil && vmReady, "needs root, QEMU and COCOON_CONFIG with built guest files (make test)"))
    func debugBootPrintsHealthAndBootTime() throws {
        // COCOON_CONFIG from the environment, as a user of the checkout has it.
        let (status, out, err) = try run(["debug", "boot", "--id", "cli-debug-boot"])
        #expect(status == 0, "\(err)")
        #expect(out.contains("sandbox cli-debug-boot booted in"))
        #expect(out.contains("agent: cocoon-agent"))
        #expect(out.contains("pid 1"))
        #expect(out.contains("guest: Linux 6.1"))
        #expect(out.contains("shut down: QEMU exited with status 0"))
    }

    @Test(.enabled(if: binary != nil && vmReady, "needs root, QEMU and COCOON_CONFIG with built guest files (make test)"),
          arguments: ["initrd", "image"])
    func debugBootWithMissingGuestRootExplains(bootFrom: String) throws {
        // The built kernel from the checkout's configuration, so the guest's root is the only thing missing.
        let dev = try String(contentsOfFile: ProcessInfo.processInfo.environment["COCOON_CONFIG"]!, encoding: .utf8)
        let kernelLine = try #require(dev.split(separator: "\n").first { $0.hasPrefix("kernel = ") })
        let missing = "/nonexistent/\(bootFrom)"
        let path = try writeTemp("[hypervisor]\n\(kernelLine)\nboot_from = \"\(bootFrom)\"\n\(bootFrom) = \"\(missing)\"\n[runtime]\nroot = \"/run/cocoon-test\"\n")
        defer { try? FileManager.default.removeItem(atPath: path) }
        let (status, _, err) = try run(["--config", path, "debug", "boot", "--id", "cli-no\(bootFrom)"])
        #expect(status != 0)
        #expect(err.contains(missing))
        #expect(err.contains(bootFrom == "image" ? "make image" : "make initramfs"))
        #expect(!FileManager.default.fileExists(atPath: "/run/cocoon-test/sandboxes/cli-no\(bootFrom)"))
    }
}
