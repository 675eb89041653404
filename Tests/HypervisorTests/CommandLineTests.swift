import Hypervisor
import Testing

@Suite struct CommandLineTests {
    func spec(machine: MachineType = .microvm, accel: Accelerator = .tcg,
              channel: ChannelTransport = .serial(socketPath: "/run/c/agent.sock")) -> VMSpec {
        VMSpec(qemuPath: "/usr/bin/qemu-system-x86_64", kernelPath: "/g/vmlinux", initrdPath: "/g/initrd",
               machine: machine, accelerator: accel, memoryMiB: 384, vcpus: 2, extraKernelParameters: ["x=1"],
               channel: channel, qmpSocketPath: "/run/c/qmp.sock", consoleLogPath: "/run/c/console.log")
    }

    /// The value following `flag`, for every occurrence.
    func values(_ args: [String], _ flag: String) -> [String] {
        args.indices.filter { args[$0] == flag && $0 + 1 < args.count }.map { args[$0 + 1] }
    }

    @Test func microvmUsesMMIOAndSharedMemory() {
        let args = QEMUCommandLine.arguments(for: spec())
        #expect(values(args, "-machine") == ["microvm,memory-backend=mem,acpi=off,isa-serial=on"])
        // TCG's code cache is bounded: the host cgroup limit counts on it.
        #expect(values(args, "-accel") == ["tcg,tb-size=\(QEMUCommandLine.tcgTranslationCacheMiB)"])
        #expect(values(args, "-m") == ["384M"])
        #expect(values(args, "-smp") == ["2"])
        #expect(values(args, "-object").contains("memory-backend-memfd,id=mem,size=384M,share=on"))
        #expect(values(args, "-global") == ["virtio-mmio.force-legacy=false"])
        #expect(values(args, "-device").contains("virtio-rng-device,rng=rng"))
        #expect(values(args, "-device").contains("virtio-serial-device,max_ports=2"))
        #expect(values(args, "-device").contains("virtserialport,chardev=agent,name=cocoon.agent"))
        #expect(values(args, "-chardev").contains("socket,id=agent,path=/run/c/agent.sock,server=off"))
        #expect(values(args, "-qmp") == ["unix:/run/c/qmp.sock,server=on,wait=off"])
        #expect(values(args, "-kernel") == ["/g/vmlinux"])
        #expect(values(args, "-initrd") == ["/g/initrd"])
        #expect(args.contains("-nodefaults") && args.contains("-no-reboot"))
        #expect(values(args, "-cpu") == ["max"])
    }

    @Test(arguments: [MachineType.microvm, .q35])
    func aRootImageReplacesTheInitramfs(machine: MachineType) {
        var s = spec(machine: machine)
        s.rootImagePath = "/g/agent,1.img"
        let args = QEMUCommandLine.arguments(for: s)
        #expect(values(args, "-initrd").isEmpty)
        // Read-only for the guest, and a comma in the path doubled so QEMU reads it as part of the value.
        #expect(values(args, "-drive") == ["file=/g/agent,,1.img,if=none,id=agentroot,format=raw,readonly=on"])
        #expect(values(args, "-device").contains(machine == .microvm ? "virtio-blk-device,drive=agentroot" : "virtio-blk-pci,drive=agentroot"))
        let cmdline = QEMUCommandLine.kernelCommandLine(for: s)
        #expect(cmdline.contains(" root=/dev/vda ro rootfstype=ext4 init=/init"), "\(cmdline)")
        #expect(cmdline.hasSuffix("x=1"), "the caller's parameters still come last")
        #expect(!QEMUCommandLine.kernelCommandLine(for: spec()).contains("root="), "an initramfs needs no root=")
    }

    @Test func nicsGetTheirTapsInOrderAndNoneByDefault() {
        #expect(values(QEMUCommandLine.arguments(for: spec()), "-netdev").isEmpty, "no network unless asked")
        var s = spec()
        s.networkDevices = [NetworkDevice(id: "net0", mac: "02:00:c6:12:00:02", mtu: 1500, tapDescriptor: 41),
                            NetworkDevice(id: "net1", mac: "02:00:c6:12:00:03", mtu: 9000, tapDescriptor: 17)]
        var args = QEMUCommandLine.arguments(for: s)
        // QEMU sees the taps at 3, 4, ... whatever the controller's descriptor numbers are.
        #expect(values(args, "-netdev") == ["tap,id=net0,fd=3,vhost=off", "tap,id=net1,fd=4,vhost=off"])
        #expect(values(args, "-device").contains("virtio-net-device,netdev=net0,mac=02:00:c6:12:00:02,host_mtu=1500"))
        #expect(values(args, "-device").contains("virtio-net-device,netdev=net1,mac=02:00:c6:12:00:03,host_mtu=9000"))
        s.machine = .q35
        s.vhostNet = true
        args = QEMUCommandLine.arguments(for: s)
        #expect(values(args, "-netdev").first == "tap,id=net0,fd=3,vhost=on")
        #expect(values(args, "-device").contains("virtio-net-pci,netdev=net0,mac=02:00:c6:12:00:02,host_mtu=1500"))
    }

    @Test func q35UsesPCIAndNoMMIOGlobal() {
        let args = QEMUCommandLine.arguments(for: spec(machine: .q35))
        #expect(values(args, "-machine") == ["q35,memory-backend=mem"])
        #expect(values(args, "-global").isEmpty)
        #expect(values(args, "-device").contains("virtio-rng-pci,rng=rng"))
        #expect(values(args, "-device").contains("virtio-serial-pci,max_ports=2"))
    }

    @Test func vsockReplacesTheSerialPort() {
        let mmio = QEMUCommandLine.arguments(for: spec(channel: .vsock(cid: 42)))
        #expect(values(mmio, "-device").contains("vhost-vsock-device,guest-cid=42"))
        #expect(!values(mmio, "-device").contains { $0.hasPrefix("virtserialport") })
        let pci = QEMUCommandLine.arguments(for: spec(machine: .q35, channel: .vsock(cid: 7)))
        #expect(values(pci, "-device").contains("vhost-vsock-pci,guest-cid=7"))
    }

    @Test func kvmUsesTheHostCPU() {
        let args = QEMUCommandLine.arguments(for: spec(accel: .kvm))
        #expect(values(args, "-cpu") == ["host"])
        #expect(values(args, "-accel") == ["kvm"])
    }

    @Test func kernelCommandLine() {
        let micro = QEMUCommandLine.kernelCommandLine(for: spec())
        #expect(micro == "console=ttyS0 reboot=t panic=-1 acpi=off pci=off quiet cocoon.log=info cocoon.channel=serial x=1")
        let q35 = QEMUCommandLine.kernelCommandLine(for: spec(machine: .q35, channel: .vsock(cid: 3)))
        #expect(!q35.contains("acpi=off"))
        #expect(q35.contains("cocoon.channel=vsock"))
        var verbose = spec()
        verbose.verboseKernel = true
        verbose.agentLogLevel = "debug"
        let v = QEMUCommandLine.kernelCommandLine(for: verbose)
        #expect(v.contains("loglevel=7") && !v.contains("quiet") && v.contains("cocoon.log=debug"))
    }
}

@Suite struct AccelerationTests {
    let good = HostVirtualization(kvmDeviceUsable: true, cpuHasVirtualizationExtensions: true, vhostVsockUsable: true)
    let noFlags = HostVirtualization(kvmDeviceUsable: true, cpuHasVirtualizationExtensions: false, vhostVsockUsable: false)
    let noDevice = HostVirtualization(kvmDeviceUsable: false, kvmDeviceError: "No such file or directory",
                                      cpuHasVirtualizationExtensions: true, vhostVsockUsable: false)

    @Test func autoPrefersKVMWhenUsable() throws {
        let (a, warning) = try AccelerationChoice.resolve(.auto, host: good)
        #expect(a == .kvm)
        #expect(warning == nil)
    }

    @Test func autoFallsBackToTCGWithOneWarning() throws {
        // A /dev/kvm without vmx/svm (this project's CI machines) must not be used.
        let (a, warning) = try AccelerationChoice.resolve(.auto, host: noFlags)
        #expect(a == .tcg)
        #expect(warning?.contains("vmx or svm") == true)
        let (b, w2) = try AccelerationChoice.resolve(.auto, host: noDevice)
        #expect(b == .tcg)
        #expect(w2?.contains("/dev/kvm") == true)
    }

    @Test func kvmInsistsAndExplains() {
        #expect(throws: HypervisorError.self) { try AccelerationChoice.resolve(.kvm, host: noFlags) }
        do {
            _ = try AccelerationChoice.resolve(.kvm, host: noDevice)
        } catch {
            #expect(error.code == .failedPrecondition)
            #expect(error.message.contains("hypervisor.accel"))
        }
    }

    @Test func tcgAlwaysWorks() throws {
        #expect(try AccelerationChoice.resolve(.tcg, host: good).0 == .tcg)
    }
}
