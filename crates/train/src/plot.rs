//! Pictures of a run, written at the end: the loss per step and the spread of
//! the reasoning intensity (min, median, max) over training, as SVG.

use std::path::Path;

use plotters::prelude::*;

use crate::error::{Result, file, io};
use crate::log::StepMetrics;

pub fn write(metrics: &Path, output: &Path) -> Result<()> {
    let steps: Vec<StepMetrics> = std::fs::read_to_string(metrics)
        .map_err(io(metrics))?
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    if steps.is_empty() {
        return Ok(());
    }
    let loss: Vec<(f64, f64)> = steps.iter().map(|m| (m.step as f64, m.loss)).collect();
    chart(&output.join("loss.svg"), "training loss", &[("loss", &loss, &BLUE)])?;
    let ri = |k: usize| -> Vec<(f64, f64)> {
        steps
            .iter()
            .filter_map(|m| m.ri.map(|r| (m.step as f64, r[k])))
            .collect()
    };
    let (min, median, max) = (ri(0), ri(2), ri(3));
    if !median.is_empty() {
        chart(
            &output.join("reasoning-intensity.svg"),
            "reasoning intensity per batch",
            &[("max", &max, &RED), ("median", &median, &BLACK), ("min", &min, &GREEN)],
        )?;
    }
    Ok(())
}

/// A named line: (label, points, colour).
type Series<'a> = (&'a str, &'a Vec<(f64, f64)>, &'a RGBColor);

fn chart(path: &Path, title: &str, series: &[Series]) -> Result<()> {
    let e = |e: &dyn std::fmt::Display| file(path)(e.to_string());
    let points = series.iter().flat_map(|(_, s, _)| s.iter());
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for &(x, y) in points {
        (x0, x1, y0, y1) = (x0.min(x), x1.max(x), y0.min(y), y1.max(y));
    }
    let pad = ((y1 - y0) * 0.05).max(1e-6);
    let root = SVGBackend::new(path, (800, 480)).into_drawing_area();
    root.fill(&WHITE).map_err(|x| e(&x))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(56)
        .build_cartesian_2d(x0..x1.max(x0 + 1.0), (y0 - pad)..(y1 + pad))
        .map_err(|x| e(&x))?;
    chart.configure_mesh().x_desc("step").draw().map_err(|x| e(&x))?;
    for (name, data, color) in series {
        let color = **color;
        chart
            .draw_series(LineSeries::new(data.iter().copied(), color))
            .map_err(|x| e(&x))?
            .label(*name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], color));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(|x| e(&x))?;
    root.present().map_err(|x| e(&x))
}
