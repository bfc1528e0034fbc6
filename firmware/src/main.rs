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
    loop {
        let now = board.clock.uptime_ms();
        // The UART's error type is Infallible: poll cannot fail.
        let _ = relay.poll(&mut board.uart, now);
    }
}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    loop {
        cortex_m::asm::nop();
    }
}
