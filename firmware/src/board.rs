//! Board support for the LM3S6965: UART0 and a millisecond clock from SysTick. This module
//! is the only code that touches hardware registers; porting to another Cortex-M board means
//! rewriting it (see docs/book/src/firmware.md), nothing else.

use core::convert::Infallible;
use core::ptr::{read_volatile, write_volatile};

use cortex_m::peripheral::{syst::SystClkSource, SYST};

/// Core clock after reset: the 12 MHz internal oscillator (QEMU models the same).
const SYSCLK_HZ: u64 = 12_000_000;
/// Serial speed of the RTU line.
pub const BAUD: u32 = 115_200;

const SYSCTL_RCGC1: usize = 0x400F_E104;
const SYSCTL_RCGC2: usize = 0x400F_E108;
const GPIOA_AFSEL: usize = 0x4000_4420;
const GPIOA_DEN: usize = 0x4000_451C;
const UART0: usize = 0x4000_C000;
const UART_DR: usize = UART0;
const UART_FR: usize = UART0 + 0x018;
const UART_IBRD: usize = UART0 + 0x024;
const UART_FBRD: usize = UART0 + 0x028;
const UART_LCRH: usize = UART0 + 0x02C;
const UART_CTL: usize = UART0 + 0x030;
const FR_BUSY: u32 = 1 << 3;
const FR_RXFE: u32 = 1 << 4;
const FR_TXFF: u32 = 1 << 5;

/// The key region: the last KiB of flash, kept out of the image by memory.x, where a
/// signing key is provisioned (docs/book/src/firmware.md).
const KEY_REGION: usize = 0x0003_FC00;

fn read(addr: usize) -> u32 {
    // SAFETY: `addr` is one of the LM3S6965 peripheral register addresses above (datasheet
    // sections 6, 8 and 12) or a word of the key region in flash, always mapped, 32-bit
    // aligned; reading them has no side effect other than the documented one (DR pops the
    // receive FIFO).
    unsafe { read_volatile(addr as *const u32) }
}

/// The first bytes of the key region, as stored (little-endian words).
pub fn key_region() -> [u8; firmware::KEY_REGION_LEN] {
    let mut out = [0u8; firmware::KEY_REGION_LEN];
    for (i, chunk) in out.chunks_mut(4).enumerate() {
        chunk.copy_from_slice(&read(KEY_REGION + 4 * i).to_le_bytes());
    }
    out
}

fn write(addr: usize, value: u32) {
    // SAFETY: as in `read`; only this module writes these registers, from one thread.
    unsafe { write_volatile(addr as *mut u32, value) }
}

/// UART0 on PA0 (RX) and PA1 (TX).
pub struct Uart0(());

impl Uart0 {
    fn init() -> Self {
        write(SYSCTL_RCGC1, read(SYSCTL_RCGC1) | 1); // UART0 clock
        write(SYSCTL_RCGC2, read(SYSCTL_RCGC2) | 1); // GPIO port A clock
        write(GPIOA_AFSEL, read(GPIOA_AFSEL) | 0b11); // PA0/PA1 to the UART
        write(GPIOA_DEN, read(GPIOA_DEN) | 0b11);
        write(UART_CTL, 0);
        // Divisor 12 MHz / (16 × 115 200) = 6.5104: integer 6, fraction round(0.5104 × 64) = 33.
        let divisor_x64 = (SYSCLK_HZ as u32 * 4 + BAUD / 2) / BAUD;
        write(UART_IBRD, divisor_x64 / 64);
        write(UART_FBRD, divisor_x64 % 64);
        write(UART_LCRH, 0x70); // 8 data bits, no parity, 1 stop bit, FIFOs on
        write(UART_CTL, 0x301); // enable, TX, RX
        Uart0(())
    }
}

impl embedded_io::ErrorType for Uart0 {
    type Error = Infallible;
}

impl embedded_io::ReadReady for Uart0 {
    fn read_ready(&mut self) -> Result<bool, Infallible> {
        Ok(read(UART_FR) & FR_RXFE == 0)
    }
}

impl embedded_io::Read for Uart0 {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, Infallible> {
        if buf.is_empty() {
            return Ok(0);
        }
        while read(UART_FR) & FR_RXFE != 0 {}
        let mut n = 0;
        while n < buf.len() && read(UART_FR) & FR_RXFE == 0 {
            buf[n] = read(UART_DR) as u8;
            n += 1;
        }
        Ok(n)
    }
}

impl embedded_io::Write for Uart0 {
    fn write(&mut self, buf: &[u8]) -> Result<usize, Infallible> {
        for &b in buf {
            while read(UART_FR) & FR_TXFF != 0 {}
            write(UART_DR, u32::from(b));
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> Result<(), Infallible> {
        while read(UART_FR) & FR_BUSY != 0 {}
        Ok(())
    }
}

/// Milliseconds since power-up, from SysTick counting core cycles. SysTick wraps every
/// 2^24 cycles (1.4 s at 12 MHz); reading the clock at least that often never loses time.
pub struct Clock {
    _syst: SYST,
    last: u32,
    cycles: u64,
}

impl Clock {
    fn new(mut syst: SYST) -> Self {
        syst.set_clock_source(SystClkSource::Core);
        syst.set_reload(0x00FF_FFFF);
        syst.clear_current();
        syst.enable_counter();
        Clock {
            _syst: syst,
            last: SYST::get_current(),
            cycles: 0,
        }
    }

    /// Milliseconds since power-up.
    pub fn uptime_ms(&mut self) -> u64 {
        let now = SYST::get_current();
        // SysTick counts down.
        let elapsed = self.last.wrapping_sub(now) & 0x00FF_FFFF;
        self.last = now;
        self.cycles += u64::from(elapsed);
        self.cycles / (SYSCLK_HZ / 1000)
    }

    /// Microseconds since power-up (the same count, finer).
    pub fn uptime_us(&mut self) -> u64 {
        self.uptime_ms();
        self.cycles / (SYSCLK_HZ / 1_000_000)
    }
}

/// Everything the firmware uses of the board.
pub struct Board {
    pub uart: Uart0,
    pub clock: Clock,
}

impl Board {
    /// Takes the peripherals; `None` if already taken.
    pub fn take() -> Option<Self> {
        let cp = cortex_m::Peripherals::take()?;
        Some(Board {
            uart: Uart0::init(),
            clock: Clock::new(cp.SYST),
        })
    }
}
