//! The relay firmware for the Stellaris LM3S6965 (Cortex-M3): a Modbus RTU slave on UART0
//! at 115 200 baud, 8N1. All logic is in the library; this file wires it to the board.
#![no_std]
#![no_main]

mod board;

use cortex_m_rt::entry;
use firmware::{Relay, BOARD};

#[entry]
fn main() -> ! {
    let Some(mut board) = board::Board::take() else {
        // The peripherals were already taken: cannot happen at the first entry.
        loop {
            cortex_m::asm::nop();
        }
    };
    // In a static (not on the stack) so that `size` shows the whole RAM the relay needs.
    let Some(relay) = cortex_m::singleton!(: Relay = Relay::new(BOARD)) else {
        loop {
            cortex_m::asm::nop();
        }
    };
    // The signing key, if one was provisioned into the key region (docs/book/src/firmware.md).
    if let Some(seed) = firmware::parse_key_region(&board::key_region()) {
        relay.provision(seed);
    }
    loop {
        let now = board.clock.uptime_ms();
        // The UART's error type is Infallible: poll cannot fail.
        let _ = relay.poll(&mut board.uart, now);
        if relay.signing_due() {
            let clock = &mut board.clock;
            relay.sign_pending(&mut || clock.uptime_us());
        }
    }
}

extern "C" {
    /// cortex-m-rt's default handler (an endless loop) for any exception or interrupt that
    /// has no handler of its own.
    fn DefaultHandler();
}

/// The LM3S6965's interrupt vectors (IRQ 0 to 43, datasheet table 2-9), all the default
/// handler: the firmware enables no interrupt (the UART is polled, the clock is SysTick's
/// counter). cortex-m-rt's generic table has 240 entries; this one keeps 784 bytes of flash
/// for the signing code.
#[link_section = ".vector_table.interrupts"]
#[no_mangle]
pub static __INTERRUPTS: [unsafe extern "C" fn(); 44] = [DefaultHandler; 44];

#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    loop {
        cortex_m::asm::nop();
    }
}
