//! AVX2 versions of the kernels in `kernels.rs`, in intrinsics: auto-vectorization of the
//! portable loops leaves the selects (`pred`, argmin columns) scalar. Same arithmetic and the
//! same tie rules as the portable versions (`tests::kernel_variants_agree`). Every function
//! requires a CPU with AVX2 and slices of the lengths its caller checked.

use super::kernels::{check_entries_body, merge_two_smallest, relax_body};
use super::{Entry, Sign, INF};
use std::arch::x86_64::*;

/// `kernels::relax` in AVX2 intrinsics: auto-vectorization leaves the `pred` select scalar.
/// Same arithmetic as the portable body: `(h + c) - v`, then a strict `<`; per lane the
/// first column holding the lane's minimum, merged lexicographically.
#[target_feature(enable = "avx2")]
pub(super) unsafe fn relax<S: Sign, E: Entry>(
    row: &[E],
    v: &[f64],
    pen: &[f64],
    d: &mut [f64],
    pred: &mut [usize],
    h: f64,
    i: usize,
) -> (f64, f64) {
    let m = row.len();
    let split = m - m % 8;
    let vh = _mm256_set1_pd(h);
    let vi = _mm256_castsi256_pd(_mm256_set1_epi64x(i as i64));
    let sign = _mm256_set1_pd(if S::NEGATE { -0.0 } else { 0.0 });
    // Two interleaved sets of 4 lanes (columns 8k..8k+3 and 8k+4..8k+7) halve the
    // dependency chains through the running minima.
    let mut acc = [_mm256_set1_pd(INF); 4]; // all A, all B, free A, free B
    let (c, vp, penp) = (row.as_ptr(), v.as_ptr(), pen.as_ptr());
    let (dp, pp) = (d.as_mut_ptr(), pred.as_mut_ptr() as *mut f64);
    let mut k = 0;
    while k < split {
        for s in 0..2 {
            let k = k + 4 * s;
            // SAFETY: k + 4 <= m and every slice has length m.
            unsafe {
                let x = _mm256_sub_pd(
                    _mm256_add_pd(vh, _mm256_xor_pd(E::load4(c.add(k)), sign)),
                    _mm256_loadu_pd(vp.add(k)),
                );
                let dd = _mm256_loadu_pd(dp.add(k));
                let better = _mm256_cmp_pd::<_CMP_LT_OQ>(x, dd);
                let nd = _mm256_min_pd(x, dd); // x < dd ? x : dd
                _mm256_storeu_pd(dp.add(k), nd);
                if _mm256_movemask_pd(better) != 0 {
                    let p = _mm256_loadu_pd(pp.add(k));
                    _mm256_storeu_pd(pp.add(k), _mm256_blendv_pd(p, vi, better));
                }
                acc[s] = _mm256_min_pd(nd, acc[s]);
                let f = _mm256_add_pd(nd, _mm256_loadu_pd(penp.add(k)));
                acc[2 + s] = _mm256_min_pd(f, acc[2 + s]);
            }
        }
        k += 8;
    }
    let mut vals = [0.0f64; 16];
    for (q, &a) in acc.iter().enumerate() {
        // SAFETY: 4-element windows of a 16-element array.
        unsafe { _mm256_storeu_pd(vals.as_mut_ptr().add(4 * q), a) };
    }
    let min = |x: &[f64]| x.iter().fold(INF, |m, &y| if y < m { y } else { m });
    let (mut best, mut free) = (min(&vals[..8]), min(&vals[8..]));
    let tail = relax_body::<S, E>(
        &row[split..],
        &v[split..],
        &pen[split..],
        &mut d[split..],
        &mut pred[split..],
        h,
        i,
    );
    best = if tail.0 < best { tail.0 } else { best };
    free = if tail.1 < free { tail.1 } else { free };
    (best, free)
}

/// `kernels::two_smallest` in AVX2 intrinsics: two interleaved sets of 4 lanes (columns
/// 8k..8k+3 and 8k+4..8k+7) each keep their two smallest `(value, column)` pairs; strict
/// comparisons in column order keep the lower column on ties, as the scalar loop does.
#[target_feature(enable = "avx2")]
pub(super) unsafe fn two_smallest<S: Sign, E: Entry>(
    row: &[E],
    v: &[f64],
) -> (f64, usize, f64, usize) {
    let m = row.len();
    let split = m - m % 8;
    let sign = _mm256_set1_pd(if S::NEGATE { -0.0 } else { 0.0 });
    let inf = _mm256_set1_pd(INF);
    let free = _mm256_castsi256_pd(_mm256_set1_epi64x(-1));
    let (mut a1, mut a2, mut b1, mut b2) = (inf, inf, inf, inf);
    let (mut ja1, mut ja2, mut jb1, mut jb2) = (free, free, free, free);
    let mut ja = _mm256_setr_epi64x(0, 1, 2, 3);
    let mut jb = _mm256_setr_epi64x(4, 5, 6, 7);
    let eight = _mm256_set1_epi64x(8);
    let (c, vp) = (row.as_ptr(), v.as_ptr());
    #[inline(always)]
    unsafe fn step(
        h: __m256d,
        j: __m256i,
        u1: &mut __m256d,
        j1: &mut __m256d,
        u2: &mut __m256d,
        j2: &mut __m256d,
    ) {
        let j = _mm256_castsi256_pd(j);
        let lt1 = _mm256_cmp_pd::<_CMP_LT_OQ>(h, *u1);
        let lt2 = _mm256_cmp_pd::<_CMP_LT_OQ>(h, *u2);
        *u2 = _mm256_blendv_pd(_mm256_blendv_pd(*u2, h, lt2), *u1, lt1);
        *j2 = _mm256_blendv_pd(_mm256_blendv_pd(*j2, j, lt2), *j1, lt1);
        *u1 = _mm256_blendv_pd(*u1, h, lt1);
        *j1 = _mm256_blendv_pd(*j1, j, lt1);
    }
    let mut k = 0;
    while k < split {
        // SAFETY: k + 8 <= m and both slices have length m.
        unsafe {
            let ha = _mm256_sub_pd(
                _mm256_xor_pd(E::load4(c.add(k)), sign),
                _mm256_loadu_pd(vp.add(k)),
            );
            let hb = _mm256_sub_pd(
                _mm256_xor_pd(E::load4(c.add(k + 4)), sign),
                _mm256_loadu_pd(vp.add(k + 4)),
            );
            step(ha, ja, &mut a1, &mut ja1, &mut a2, &mut ja2);
            step(hb, jb, &mut b1, &mut jb1, &mut b2, &mut jb2);
        }
        ja = _mm256_add_epi64(ja, eight);
        jb = _mm256_add_epi64(jb, eight);
        k += 8;
    }
    let mut vals = [0.0f64; 16];
    let mut cols = [0usize; 16];
    for (q, (u, j)) in [(a1, ja1), (a2, ja2), (b1, jb1), (b2, jb2)]
        .into_iter()
        .enumerate()
    {
        // SAFETY: 4-element windows of 16-element arrays.
        unsafe {
            _mm256_storeu_pd(vals.as_mut_ptr().add(4 * q), u);
            _mm256_storeu_pd(cols.as_mut_ptr().add(4 * q) as *mut f64, j);
        }
    }
    let tail = (split..m).map(|j| (S::get(row[j].f64()) - v[j], j));
    merge_two_smallest(vals.into_iter().zip(cols).chain(tail))
}

/// `kernels::column_minima` in AVX2 intrinsics (`v` and `argmin` stay in L1 across rows); an
/// entry is an f32 exactly when converting it to f32 and back gives it again.
#[target_feature(enable = "avx2")]
pub(super) unsafe fn column_minima<S: Sign>(
    cost: &[f64],
    n: usize,
    bad: f64,
    v: &mut [f64],
    argmin: &mut [usize],
) -> ((bool, f64), bool) {
    let m = v.len();
    let split = m - m % 4;
    let sign = _mm256_set1_pd(if S::NEGATE { -0.0 } else { 0.0 });
    let (vbad, inf) = (_mm256_set1_pd(bad), _mm256_set1_pd(INF));
    let (mut invalid, mut big) = (_mm256_setzero_pd(), _mm256_setzero_pd());
    let mut narrow = _mm256_castsi256_pd(_mm256_set1_epi64x(-1));
    let mut all_narrow = true;
    let (vp, ap) = (v.as_mut_ptr(), argmin.as_mut_ptr() as *mut f64);
    for i in 0..n {
        let row = &cost[i * m..(i + 1) * m];
        let (rp, vi) = (
            row.as_ptr(),
            _mm256_castsi256_pd(_mm256_set1_epi64x(i as i64)),
        );
        let mut k = 0;
        while k < split {
            // SAFETY: k + 4 <= m and `row`, `v`, `argmin` have length m.
            unsafe {
                let raw = _mm256_loadu_pd(rp.add(k));
                let c = _mm256_xor_pd(raw, sign);
                let vv = _mm256_loadu_pd(vp.add(k));
                let lt = _mm256_cmp_pd::<_CMP_LT_OQ>(c, vv);
                _mm256_storeu_pd(vp.add(k), _mm256_min_pd(c, vv)); // c < v ? c : v
                let a = _mm256_loadu_pd(ap.add(k));
                _mm256_storeu_pd(ap.add(k), _mm256_blendv_pd(a, vi, lt));
                let nan_or_bad = _mm256_or_pd(
                    _mm256_cmp_pd::<_CMP_UNORD_Q>(raw, raw),
                    _mm256_cmp_pd::<_CMP_EQ_OQ>(raw, vbad),
                );
                invalid = _mm256_or_pd(invalid, nan_or_bad);
                let abs = _mm256_andnot_pd(_mm256_set1_pd(-0.0), raw);
                let finite = _mm256_cmp_pd::<_CMP_LT_OQ>(abs, inf); // false on NaN
                big = _mm256_max_pd(big, _mm256_and_pd(abs, finite));
                let round_trip = _mm256_cvtps_pd(_mm256_cvtpd_ps(raw));
                narrow = _mm256_and_pd(narrow, _mm256_cmp_pd::<_CMP_EQ_OQ>(round_trip, raw));
            }
            k += 4;
        }
        for j in split..m {
            all_narrow &= row[j] as f32 as f64 == row[j];
            let c = S::get(row[j]);
            if c < v[j] {
                v[j] = c;
                argmin[j] = i;
            }
        }
    }
    let (mut inv, mut bg) = ([0.0f64; 4], [0.0f64; 4]);
    // SAFETY: 4-element arrays.
    unsafe {
        _mm256_storeu_pd(inv.as_mut_ptr(), invalid);
        _mm256_storeu_pd(bg.as_mut_ptr(), big);
    }
    let invalid = inv.iter().any(|x| x.to_bits() != 0);
    all_narrow &= _mm256_movemask_pd(narrow) == 0b1111;
    let largest = bg.iter().fold(0.0f64, |m, &x| if x > m { x } else { m });
    // The columns past the last full chunk were compared above; check them here.
    let (tail_invalid, tail_largest) = if split < m {
        (0..n)
            .map(|i| check_entries_body(&cost[i * m + split..(i + 1) * m], bad))
            .fold((false, 0.0f64), |(a, b), (c, d)| (a | c, b.max(d)))
    } else {
        (false, 0.0)
    };
    (
        (invalid | tail_invalid, largest.max(tail_largest)),
        all_narrow,
    )
}
