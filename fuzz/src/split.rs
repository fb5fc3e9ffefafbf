//! Deterministic cuts of an input, driven by a seed the fuzzer controls.

/// xorshift64*: cheap, deterministic, good enough to vary chunk sizes.
#[derive(Debug, Clone)]
pub struct Cuts {
    state: u64,
}

impl Cuts {
    /// A generator for `seed`; every seed, zero included, gives a usable sequence.
    pub fn new(seed: u64) -> Self {
        Self {
            state: seed ^ 0x9e37_79b9_7f4a_7c15,
        }
    }

    /// The next pseudo-random number.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.state;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.state = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A chunk length from 1 to `max`, mostly short, sometimes long.
    pub fn chunk_len(&mut self, max: usize) -> usize {
        let roll = self.next_u64();
        let bound = match roll % 4 {
            0 => 3,
            1 => 16,
            2 => 200,
            _ => max,
        };
        1 + (roll >> 8) as usize % bound.clamp(1, max.max(1))
    }

    /// `input` cut into consecutive chunks that cover it exactly.
    pub fn chunks<'a>(&mut self, input: &'a [u8]) -> Vec<&'a [u8]> {
        let mut chunks = Vec::new();
        let mut rest = input;
        while !rest.is_empty() {
            let (chunk, tail) = rest.split_at(self.chunk_len(rest.len()));
            chunks.push(chunk);
            rest = tail;
        }
        chunks
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_cover_the_input_in_order() {
        let input: Vec<u8> = (0..=255).collect();
        for seed in 0..50 {
            let chunks = Cuts::new(seed).chunks(&input);
            assert!(chunks.iter().all(|chunk| !chunk.is_empty()));
            assert_eq!(chunks.concat(), input);
        }
    }
}
