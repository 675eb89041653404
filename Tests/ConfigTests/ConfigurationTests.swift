import Config
import Foundation
import Hypervisor
import Testing

@Suite struct ConfigurationTests {
    @Test func defaultsNeedNoFile() {
        let c = Configuration.defaults(dataDirectory: "/opt/x/share/cocoon")
        #expect(c.hypervisor.kernel == "/opt/x/share/cocoon/vmlinux")
        #expect(c.hypervisor.initrd == "/opt/x/share/cocoon/cocoon-agent.initrd")
        #expect(c.hypervisor.image == "/opt/x/share/cocoon/cocoon-agent.img")
        #expect(c.hypervisor.bootFrom == .image)
        #expect(c.hypervisor.machine == .microvm)
        #expect(c.hypervisor.accel == .auto)
        #expect(c.runtime.isolation == .vm)
        #expect(c.source == nil)
    }

    @Test func parsesEveryKey() throws {
        let text = """
            [hypervisor]
            path = "/usr/local/bin/qemu"
            kernel = "/k/vmlinux"
            initrd = "/k/initrd"
            image = "/k/agent.img"
            boot_from = "initrd"
            machine = "q35"
            accel = "tcg"
            memory_mib = 512
            vcpus = 2
            boot_timeout_seconds = 12.5
            kernel_params = "foo=1  bar"
            virtiofsd = "/usr/libexec/virtiofsd"
            host_memory_overhead_mib = 0
            [agent]
            log_level = "debug"
            [runtime]
            isolation = "process"
            root = "/run/x"
            debug = true
            network_model = "macvtap"
            """
        let c = try Configuration.parse(text, file: "/etc/c.toml")
        #expect(c.hypervisor.path == "/usr/local/bin/qemu")
        #expect(c.hypervisor.kernel == "/k/vmlinux")
        #expect(c.hypervisor.initrd == "/k/initrd")
        #expect(c.hypervisor.image == "/k/agent.img")
        #expect(c.hypervisor.bootFrom == .initrd)
        #expect(c.hypervisor.machine == .q35)
        #expect(c.hypervisor.accel == .tcg)
        #expect(c.hypervisor.memoryMiB == 512)
        #expect(c.hypervisor.vcpus == 2)
        #expect(c.hypervisor.bootTimeoutSeconds == 12.5)
        #expect(c.hypervisor.kernelParams == ["foo=1", "bar"])
        #expect(c.hypervisor.virtiofsd == "/usr/libexec/virtiofsd")
        #expect(c.hypervisor.hostMemoryOverheadMiB == 0)
        #expect(Configuration.defaults().hypervisor.hostMemoryOverheadMiB == 256)
        #expect(c.agent.logLevel == .debug)
        #expect(c.runtime.isolation == .process)
        #expect(c.runtime.root == "/run/x")
        #expect(c.runtime.debug)
        #expect(c.runtime.networkModel == .macvtap)
        #expect(Configuration.defaults().runtime.networkModel == .tcfilter)
        #expect(c.source == "/etc/c.toml")
    }

    @Test func partialFileKeepsDefaults() throws {
        let c = try Configuration.parse("[hypervisor]\nvcpus = 4\n", file: "f.toml")
        #expect(c.hypervisor.vcpus == 4)
        #expect(c.hypervisor.memoryMiB == Configuration.defaults().hypervisor.memoryMiB)
    }

    private func failure(_ text: String) -> ConfigError? {
        do {
            _ = try Configuration.parse(text, file: "/etc/cocoon/configuration.toml")
            return nil
        } catch {
            return error
        }
    }

    @Test func unknownKeyNamesFileKeyAndValidKeys() throws {
        let e = try #require(failure("[hypervisor]\nmemory = 512\n"))
        #expect(e.file == "/etc/cocoon/configuration.toml")
        #expect(e.key == "hypervisor.memory")
        #expect(e.message.contains("hypervisor.memory_mib"))
        #expect(e.code == .invalidArgument)
    }

    @Test func unknownTable() throws {
        let e = try #require(failure("[hypervisr]\n"))
        #expect(e.key == "hypervisr")
        #expect(e.message.contains("hypervisor"))
    }

    @Test func badChoiceListsValidValues() throws {
        let e = try #require(failure("[hypervisor]\nmachine = \"virt\"\n"))
        #expect(e.key == "hypervisor.machine")
        #expect(e.message.contains("microvm, q35, pc"))
        let a = try #require(failure("[hypervisor]\naccel = \"hvf\"\n"))
        #expect(a.message.contains("auto, kvm, tcg"))
        let i = try #require(failure("[runtime]\nisolation = \"none\"\n"))
        #expect(i.message.contains("vm, process"))
        let b = try #require(failure("[hypervisor]\nboot_from = \"disk\"\n"))
        #expect(b.key == "hypervisor.boot_from")
        #expect(b.message.contains("image, initrd"))
    }

    @Test func wrongTypesAndRanges() throws {
        #expect(try #require(failure("[hypervisor]\nvcpus = \"2\"\n")).message.contains("must be an integer"))
        #expect(try #require(failure("[hypervisor]\nvcpus = 0\n")).message.contains("valid: 1 to 240"))
        #expect(try #require(failure("[hypervisor]\nmemory_mib = 16\n")).message.contains("valid: 64"))
        #expect(try #require(failure("[hypervisor]\nhost_memory_overhead_mib = -1\n")).key == "hypervisor.host_memory_overhead_mib")
        #expect(try #require(failure("[hypervisor]\nboot_timeout_seconds = 0\n")).key == "hypervisor.boot_timeout_seconds")
        #expect(try #require(failure("[runtime]\ndebug = 1\n")).message.contains("true or false"))
        #expect(try #require(failure("[runtime]\nnetwork_model = \"bridge\"\n")).message.contains("tcfilter, macvtap"))
        #expect(try #require(failure("hypervisor = 3\n")).message.contains("must be a table"))
    }

    @Test func pathsMustBeAbsoluteAndSafeForQEMU() throws {
        #expect(try #require(failure("[hypervisor]\nkernel = \"vmlinux\"\n")).message.contains("absolute path"))
        #expect(try #require(failure("[hypervisor]\nkernel = \"/a,b\"\n")).message.contains("without commas"))
    }

    @Test func kernelParametersRejectQuotesAndControlCharacters() throws {
        let e = try #require(failure("[hypervisor]\nkernel_params = \"a=\\\"b\\\"\"\n"))
        #expect(e.key == "hypervisor.kernel_params")
        #expect(try #require(failure("[hypervisor]\nkernel_params = \"a\\tb\"\n")).message.contains("printable ASCII"))
    }

    @Test func syntaxErrorNamesTheLine() throws {
        let e = try #require(failure("[hypervisor]\nvcpus = = 2\n"))
        #expect(e.key == nil)
        #expect(e.message.contains("line 2"))
    }

    @Test func pathPrecedence() {
        #expect(Configuration.resolvePath(explicit: "/a", environment: ["COCOON_CONFIG": "/b"]) == "/a")
        #expect(Configuration.resolvePath(explicit: nil, environment: ["COCOON_CONFIG": "/b"]) == "/b")
        #expect(Configuration.resolvePath(explicit: "", environment: ["COCOON_CONFIG": "/b"]) == "/b")
    }

    @Test func missingFileIsAClearError() throws {
        do {
            _ = try Configuration.load(explicitPath: "/nonexistent/cocoon.toml", environment: [:])
            Issue.record("expected an error")
        } catch {
            #expect(error.file == "/nonexistent/cocoon.toml")
            #expect(error.code == .notFound)
        }
    }

    @Test func loadsFromEnvironment() throws {
        let path = NSTemporaryDirectory() + "cocoon-config-\(getpid()).toml"
        try "[hypervisor]\nvcpus = 3\n".write(toFile: path, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: path) }
        let c = try Configuration.load(explicitPath: nil, environment: ["COCOON_CONFIG": path])
        #expect(c.hypervisor.vcpus == 3)
        #expect(c.source == path)
    }
}
