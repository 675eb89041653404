import Config
import HostCheck
import Hypervisor
import Testing

@Suite struct HostCheckTests {
    let noKVM = HostVirtualization(kvmDeviceUsable: true, cpuHasVirtualizationExtensions: false, vhostVsockUsable: false)

    func config(kernel: String = "/nonexistent/vmlinux", accel: AccelerationMode = .auto) -> Configuration {
        var c = Configuration.defaults(dataDirectory: "/nonexistent")
        c.hypervisor.kernel = kernel
        c.hypervisor.accel = accel
        return c
    }

    @Test func missingGuestFilesFailWithTheMakeTarget() throws {
        let results = HostCheck.run(configuration: config(), host: noKVM, isRoot: true)
        let kernel = try #require(results.first { $0.name == "guest kernel" })
        #expect(kernel.status == .failure)
        #expect(kernel.line.contains("/nonexistent/vmlinux"))
        #expect(kernel.line.contains("make kernel"))
        #expect(!HostCheck.passed(results))
    }

    @Test func tcgFallbackIsAWarningUnlessKVMIsRequired() throws {
        let auto = HostCheck.run(configuration: config(), host: noKVM, isRoot: true)
        #expect(auto.first { $0.name == "acceleration" }?.status == .warning)
        let strict = HostCheck.run(configuration: config(accel: .kvm), host: noKVM, isRoot: true)
        #expect(strict.first { $0.name == "acceleration" }?.status == .failure)
    }

    @Test func notRootFails() {
        let results = HostCheck.run(configuration: config(), host: noKVM, isRoot: false)
        #expect(results.first { $0.name == "root" }?.status == .failure)
    }

    @Test func everyRequirementIsListed() {
        let names = HostCheck.run(configuration: config(), host: noKVM, isRoot: true).map(\.name)
        #expect(names == ["root", "configuration", "QEMU", "acceleration", "vhost-vsock", "guest kernel",
                          "guest image", "virtiofsd", "cgroups", "seccomp"])
    }

    @Test func lineFormat() {
        #expect(CheckResult("x", .ok, "fine", fix: "ignored").line == "[ ok ] x: fine")
        #expect(CheckResult("x", .failure, "bad", fix: "do y").line == "[FAIL] x: bad -- fix: do y")
    }
}
