import Config
import Testing

@Suite struct VMAnnotationTests {
    func config(_ toml: String) throws -> HypervisorConfig {
        try Configuration.parse(toml, file: "test.toml").hypervisor
    }

    @Test func nothingIsAllowedByDefault() throws {
        let h = try config("")
        #expect(h.enableAnnotations.isEmpty)
        #expect(try VMOverrides.from(annotations: ["other": "x"], config: h, file: "c.json") == VMOverrides())
        do {
            _ = try VMOverrides.from(annotations: ["io.cocoon.vm.memory_mib": "512"], config: h, file: "c.json")
            Issue.record("an annotation the configuration does not enable was accepted")
        } catch {
            #expect(error.code == .permissionDenied)
            #expect(error.message.contains("io.cocoon.vm.memory_mib") && error.message.contains("hypervisor.enable_annotations"))
        }
    }

    @Test func enabledAnnotationsAreReadAndChecked() throws {
        let h = try config("[hypervisor]\nenable_annotations = [\"memory_mib\", \"vcpus\", \"kernel_params\"]\nmax_vcpus = 4\n")
        let o = try VMOverrides.from(annotations: ["io.cocoon.vm.memory_mib": "512", "io.cocoon.vm.vcpus": "2",
                                                   "io.cocoon.vm.kernel_params": "quiet loglevel=3"], config: h, file: "c.json")
        #expect(o == VMOverrides(memoryMiB: 512, vcpus: 2, kernelParams: ["quiet", "loglevel=3"]))
        for (key, value) in [("io.cocoon.vm.vcpus", "5"), ("io.cocoon.vm.memory_mib", "lots"), ("io.cocoon.vm.memory_mib", "16"),
                             ("io.cocoon.vm.kernel_params", "init=\"/bin/sh\""), ("io.cocoon.vm.disk", "1")] {
            #expect(throws: ConfigError.self, "\(key)=\(value)") {
                try VMOverrides.from(annotations: [key: value], config: h, file: "c.json")
            }
        }
    }

    @Test func theAllowListItselfIsValidated() {
        #expect(throws: ConfigError.self) { try config("[hypervisor]\nenable_annotations = [\"memory\"]\n") }
        #expect(throws: ConfigError.self) { try config("[hypervisor]\nenable_annotations = \"vcpus\"\n") }
    }
}
