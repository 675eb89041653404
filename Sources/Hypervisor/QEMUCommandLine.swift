import AgentAPI
/// Builds QEMU's arguments. Pure: no file system access, so it is tested exhaustively.
public enum QEMUCommandLine {
    /// QEMU's descriptors 0-2 are stdio; the taps follow.
    public static let firstTapDescriptor = 3
    /// TCG's translated-code cache. QEMU's default (up to 1 GiB) would let a guest that runs much
    /// different code grow QEMU far beyond the VM's RAM, past a host cgroup limit sized from it.
    public static let tcgTranslationCacheMiB = 128

    public static func arguments(for spec: VMSpec) -> [String] {
        let mmio = !spec.machine.usesPCI
        var machine = "\(spec.machine.rawValue),memory-backend=mem"
        if spec.machine == .microvm {
            // No ACPI in the guest kernel; QEMU then lists the virtio-mmio devices on the kernel command line.
            machine += ",acpi=off,isa-serial=on"
        }
        var args: [String] = [
            "-name", "cocoon,debug-threads=on",
            "-machine", machine,
            "-accel", spec.accelerator == .kvm ? "kvm" : "tcg,tb-size=\(tcgTranslationCacheMiB)",
            "-cpu", spec.accelerator == .kvm ? "host" : "max",
            "-smp", "\(spec.vcpus)",
            "-m", "\(spec.memoryMiB)M",
            // memfd, shared: virtiofsd maps guest memory.
            "-object", "memory-backend-memfd,id=mem,size=\(spec.memoryMiB)M,share=on",
            "-nodefaults", "-no-user-config", "-display", "none",
            // The guest shuts down by rebooting; -no-reboot turns that into QEMU exiting.
            "-no-reboot",
            "-kernel", spec.kernelPath,
        ]
        if let image = spec.rootImagePath {
            // Read-only for the guest: it can never write the image every VM on the host shares.
            args += [
                "-drive", "file=\(optionValue(image)),if=none,id=agentroot,format=raw,readonly=on",
                "-device", (mmio ? "virtio-blk-device" : "virtio-blk-pci") + ",drive=agentroot",
            ]
        } else {
            args += ["-initrd", spec.initrdPath]
        }
        args += [
            "-append", kernelCommandLine(for: spec),
            "-chardev", "file,id=console,path=\(spec.consoleLogPath)",
            "-serial", "chardev:console",
            "-qmp", "unix:\(spec.qmpSocketPath),server=on,wait=off",
            // Without entropy the Swift runtime blocks in getrandom() for about a second at start.
            "-object", "rng-random,id=rng,filename=/dev/urandom",
            "-device", mmio ? "virtio-rng-device,rng=rng" : "virtio-rng-pci,rng=rng",
        ]
        if mmio {
            // virtiofsd refuses legacy virtio devices.
            args += ["-global", "virtio-mmio.force-legacy=false"]
        }
        if let shared = spec.shared {
            switch shared.kind {
            case .virtioFS:
                args += [
                    "-chardev", "socket,id=shared,path=\(shared.socketPath)",
                    "-device", (mmio ? "vhost-user-fs-device" : "vhost-user-fs-pci") + ",queue-size=1024,chardev=shared,tag=\(shared.tag)",
                ]
            case .ninep:
                args += [
                    // passthrough: QEMU (root) stores the guest's owners and modes as they are.
                    "-fsdev", "local,id=shared,path=\(shared.hostPath),security_model=passthrough",
                    "-device", (mmio ? "virtio-9p-device" : "virtio-9p-pci") + ",fsdev=shared,mount_tag=\(shared.tag)",
                ]
            }
        }
        for (n, nic) in spec.networkDevices.enumerated() {
            // The tap was opened in the pod's network namespace; QEMU itself stays in the host's.
            args += [
                "-netdev", "tap,id=\(nic.id),fd=\(firstTapDescriptor + n),vhost=\(spec.vhostNet ? "on" : "off")",
                "-device", (mmio ? "virtio-net-device" : "virtio-net-pci") + ",netdev=\(nic.id),mac=\(nic.mac),host_mtu=\(nic.mtu)",
            ]
        }
        switch spec.channel {
        case .vsock(let cid):
            args += ["-device", (mmio ? "vhost-vsock-device" : "vhost-vsock-pci") + ",guest-cid=\(cid)"]
        case .serial(let socketPath):
            args += [
                "-device", mmio ? "virtio-serial-device,max_ports=2" : "virtio-serial-pci,max_ports=2",
                // QEMU connects to the socket the controller already listens on, so the port is
                // open from the guest's first instruction and no side waits for the other to appear.
                "-chardev", "socket,id=agent,path=\(socketPath),server=off",
                "-device", "virtserialport,chardev=agent,name=\(AgentChannel.portName)",
            ]
        }
        return args
    }

    public static func kernelCommandLine(for spec: VMSpec) -> String {
        // reboot=t (triple fault) resets at once; reboot=k spun 1.5 s in kb_wait() on microvm, which has
        // no keyboard controller. panic=-1 turns a panic into a reset, so QEMU exits and the host reports it.
        var params = ["console=ttyS0", "reboot=t", "panic=-1"]
        // microvm has neither ACPI nor PCI: say so rather than let the kernel probe for them.
        if spec.machine == .microvm { params += ["acpi=off", "pci=off"] }
        params.append(spec.verboseKernel ? "loglevel=7" : "quiet")
        params.append("cocoon.log=\(spec.agentLogLevel)")
        switch spec.channel {
        case .vsock: params.append("cocoon.channel=vsock")
        case .serial: params.append("cocoon.channel=serial")
        }
        if spec.rootImagePath != nil {
            // The only disk, so /dev/vda; /init is the agent, as in the initramfs.
            params += ["root=/dev/vda", "ro", "rootfstype=ext4", "init=/init"]
        }
        params += spec.extraKernelParameters
        return params.joined(separator: " ")
    }

    /// A value inside a QEMU option list, where a comma ends the value unless doubled.
    static func optionValue(_ value: String) -> String {
        String(value.flatMap { $0 == "," ? [",", ","] : [$0] })
    }
}
