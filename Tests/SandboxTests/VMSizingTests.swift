import Config
import OCI
import Sandbox
import Testing

@Suite struct VMSizingTests {
    let config = Configuration.defaults().hypervisor

    @Test func withoutLimitsTheConfigurationDecides() {
        #expect(VMSizing.size(for: nil, config: config) == .init(memoryMiB: config.memoryMiB, vcpus: config.vcpus))
        #expect(VMSizing.size(for: Resources(), config: config) == .init(memoryMiB: config.memoryMiB, vcpus: config.vcpus))
    }

    @Test func memoryLimitPlusOverhead() {
        let r = Resources(memory: MemoryResources(limit: 512 << 20))
        #expect(VMSizing.size(for: r, config: config).memoryMiB == 512 + config.memoryOverheadMiB)
        // A limit that is not a whole MiB is rounded up, never down.
        let odd = Resources(memory: MemoryResources(limit: (100 << 20) + 1))
        #expect(VMSizing.size(for: odd, config: config).memoryMiB == 101 + config.memoryOverheadMiB)
    }

    @Test func cpuQuotaRoundsUpToWholeVcpusWithinTheCap() {
        #expect(VMSizing.size(for: Resources(cpu: CPUResources(quota: 150_000, period: 100_000)), config: config).vcpus == 2)
        #expect(VMSizing.size(for: Resources(cpu: CPUResources(quota: 50_000, period: 100_000)), config: config).vcpus == 1)
        #expect(VMSizing.size(for: Resources(cpu: CPUResources(quota: 200_000)), config: config).vcpus == 2, "period defaults to 100 ms")
        #expect(VMSizing.size(for: Resources(cpu: CPUResources(quota: 10_000_000, period: 100_000)), config: config).vcpus == config.maxVcpus)
        #expect(VMSizing.size(for: Resources(cpu: CPUResources(quota: -1)), config: config).vcpus == config.vcpus, "-1 means no quota")
    }

    @Test func overheadAndCapAreConfigurable() throws {
        let c = try Configuration.parse("[hypervisor]\nmemory_overhead_mib = 64\nmax_vcpus = 4\n", file: "t.toml")
        #expect(c.hypervisor.memoryOverheadMiB == 64)
        #expect(c.hypervisor.maxVcpus == 4)
        #expect(throws: ConfigError.self) { try Configuration.parse("[hypervisor]\nmemory_overhead_mib = 1\n", file: "t.toml") }
        #expect(throws: ConfigError.self) { try Configuration.parse("[hypervisor]\nshared_fs = \"nfs\"\n", file: "t.toml") }
        #expect(try Configuration.parse("[hypervisor]\nshared_fs = \"9p\"\n", file: "t.toml").hypervisor.sharedFS == .ninep)
    }
}
