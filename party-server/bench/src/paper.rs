//! The paper's published numbers (CipherDM, Tables 4, 5, 6 and the text of
//! Section 5.4 on Fig. 5), printed next to ours.  They are references from
//! another machine (3 parties on one Intel Xeon Silver 4314 thread each,
//! SPU), not results of this project; every table that shows them says so.

/// One activation's column in the paper's tables, in the order ReLU, SiLU, Mish.
pub const ACTIVATIONS: [&str; 3] = ["relu", "silu", "mish"];

/// Index of an activation name in [`ACTIVATIONS`].
pub fn activation_index(name: &str) -> Option<usize> {
    ACTIVATIONS.iter().position(|a| *a == name)
}

/// Table 4: total time of sampling one image, seconds, `[activation][local, LAN]`.
pub struct Table4 {
    pub cpu: [[f64; 2]; 3],
    pub spu: [[f64; 2]; 3],
    pub cipherdm: [[f64; 2]; 3],
}

pub const TABLE4_DDPM: Table4 = Table4 {
    cpu: [[373.0, 377.0], [370.0, 369.0], [372.0, 376.0]],
    spu: [[9879.0, 17265.0], [13054.0, 24042.0], [17698.0, 31002.0]],
    cipherdm: [[9473.0, 16669.0], [9688.0, 17915.0], [9520.0, 16686.0]],
};

pub const TABLE4_DDIM: Table4 = Table4 {
    cpu: [[28.0, 27.0], [28.0, 27.0], [28.0, 28.0]],
    spu: [[587.0, 949.0], [808.0, 1250.0], [1047.0, 1781.0]],
    cipherdm: [[534.0, 910.0], [648.0, 1088.0], [576.0, 979.0]],
};

/// Table 5: MPC time (s) and communication (GB) of one image, `[activation]`.
pub struct Table5 {
    pub spu: [(f64, f64); 3],
    pub cipherdm: [(f64, f64); 3],
}

pub const TABLE5_LOCAL_DDPM: Table5 = Table5 {
    spu: [(7076.0, 186.18), (9794.0, 268.04), (14295.0, 391.11)],
    cipherdm: [(6069.0, 198.61), (7278.0, 198.72), (6405.0, 230.33)],
};
pub const TABLE5_LAN_DDPM: Table5 = Table5 {
    spu: [(14816.0, 186.10), (20679.0, 268.04), (27586.0, 391.07)],
    cipherdm: [(12174.0, 198.40), (14583.0, 198.84), (12660.0, 230.31)],
};
pub const TABLE5_LOCAL_DDIM: Table5 = Table5 {
    spu: [(492.0, 9.13), (712.0, 13.42), (957.0, 19.84)],
    cipherdm: [(413.0, 10.00), (474.0, 11.07), (411.0, 11.07)],
};
pub const TABLE5_LAN_DDIM: Table5 = Table5 {
    spu: [(855.0, 9.13), (1260.0, 13.44), (1678.0, 19.85)],
    cipherdm: [(789.0, 9.56), (907.0, 11.08), (795.0, 11.09)],
};

/// The paper's figures for one (sampler, link): Table 4's total time and
/// Table 5's MPC time and communication.
pub fn tables(ddpm: bool, lan: bool) -> (&'static Table4, &'static Table5) {
    match (ddpm, lan) {
        (true, false) => (&TABLE4_DDPM, &TABLE5_LOCAL_DDPM),
        (true, true) => (&TABLE4_DDPM, &TABLE5_LAN_DDPM),
        (false, false) => (&TABLE4_DDIM, &TABLE5_LOCAL_DDIM),
        (false, true) => (&TABLE4_DDIM, &TABLE5_LAN_DDIM),
    }
}

/// Table 6: FID of 10k images (Inception features), plaintext CPU vs
/// CipherDM's approximations in plaintext, `[activation]`.
pub const TABLE6_CPU: [f64; 3] = [110.13, 79.46, 86.24];
pub const TABLE6_CIPHERDM: [f64; 3] = [272.26, 252.12, 202.64];

/// Section 5.4 (Fig. 5): each protocol's share of the time improvement of
/// one U-Net call, as the text states it (the figure has no other numbers).
pub const FIG5: [&str; 3] = [
    "softmax 77.8 %, time embedding 22.2 %",
    "activation 74.3 %",
    "activation 86.6 %",
];
