/* Make this process see the other x86-64 vendor: an LD_PRELOAD shim for testing portable numerics.
 *
 * MKL, oneDNN, NNPACK and PyTorch choose code paths from the CPUID instruction; a portable run must give
 * the same bits whatever it answers. This shim turns on the kernel's CPUID faulting (arch_prctl
 * ARCH_SET_CPUID; the "cpuid_fault" flag in /proc/cpuinfo), answers each CPUID from the real one, then
 * swaps the vendor string (GenuineIntel <-> AuthenticAMD) and divides every cache's sets by four, so that
 * the libraries take the dispatch and blocking decisions they would take on a CPU of the other vendor
 * with smaller caches. At exit it writes to stderr how many CPUID calls it answered (0 means it never
 * took effect). Only for tests: the instruction set itself is the real one. */
#define _GNU_SOURCE
#include <asm/prctl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <ucontext.h>
#include <unistd.h>

static volatile long answered;

static void real_cpuid(uint32_t leaf, uint32_t subleaf, uint32_t r[4]) {
    __asm__ volatile("cpuid" : "=a"(r[0]), "=b"(r[1]), "=c"(r[2]), "=d"(r[3]) : "a"(leaf), "c"(subleaf));
}

static void on_fault(int sig, siginfo_t *info, void *context) {
    greg_t *regs = ((ucontext_t *)context)->uc_mcontext.gregs;
    const unsigned char *ip = (const unsigned char *)regs[REG_RIP];
    (void)info;
    if (ip[0] != 0x0f || ip[1] != 0xa2) { /* a genuine crash: let it crash */
        signal(sig, SIG_DFL);
        return;
    }
    uint32_t leaf = (uint32_t)regs[REG_RAX], r[4];
    syscall(SYS_arch_prctl, ARCH_SET_CPUID, 1); /* the real CPUID may run only with faulting off */
    real_cpuid(leaf, (uint32_t)regs[REG_RCX], r);
    syscall(SYS_arch_prctl, ARCH_SET_CPUID, 0);
    if (leaf == 0) {
        const char *vendor = memcmp(&r[1], "Genu", 4) == 0 ? "AuthenticAMD" : "GenuineIntel";
        memcpy(&r[1], vendor, 4); /* EBX, EDX, ECX spell the vendor */
        memcpy(&r[3], vendor + 4, 4);
        memcpy(&r[2], vendor + 8, 4);
    }
    if (leaf == 4 && (r[0] & 0x1f)) r[2] = (r[2] + 1) / 4 - 1; /* ECX: sets - 1 */
    regs[REG_RAX] = r[0];
    regs[REG_RBX] = r[1];
    regs[REG_RCX] = r[2];
    regs[REG_RDX] = r[3];
    regs[REG_RIP] += 2;
    answered++;
}

__attribute__((constructor)) static void start(void) {
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_sigaction = on_fault;
    action.sa_flags = SA_SIGINFO | SA_NODEFER;
    sigaction(SIGSEGV, &action, NULL);
    syscall(SYS_arch_prctl, ARCH_SET_CPUID, 0); /* per thread, inherited by the threads started later */
}

__attribute__((destructor)) static void report(void) {
    dprintf(2, "other_vendor: answered %ld CPUID calls\n", answered);
}
