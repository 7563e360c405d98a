"""The report's HTML template and stylesheet (Jinja2, autoescaped), kept in Python so the package
carries them without package-data entries. Print rules (@page) shape the PDF."""

CSS = """
@page { size: A4; margin: 16mm 14mm 16mm 14mm;
  @bottom-left { content: string(report-title); font-size: 7.5pt; color: #666; }
  @bottom-right { content: "page " counter(page) " of " counter(pages); font-size: 7.5pt; color: #666; } }
@page { @top-center { content: string(synthetic-mark); font-size: 8pt; font-weight: bold; color: #a40000; } }
html { font-family: "DejaVu Sans", "Helvetica Neue", Arial, sans-serif; font-size: 10pt; color: #1a1a1a; }
body { max-width: 190mm; margin: 0 auto; padding: 0 4mm; line-height: 1.35; }
h1 { font-size: 17pt; margin: 0 0 2mm; string-set: report-title content(); }
h2 { font-size: 13pt; margin: 7mm 0 2mm; border-bottom: 1px solid #ccc; padding-bottom: 1mm; break-after: avoid; }
h3 { font-size: 10.5pt; margin: 4mm 0 1.5mm; break-after: avoid; }
p { margin: 1.5mm 0; }
.meta, .note { color: #555; font-size: 8.5pt; }
.synthetic { border: 2px solid #a40000; color: #a40000; background: #fff3f3; padding: 2mm 3mm; font-weight: bold;
  margin: 2mm 0 4mm; string-set: synthetic-mark "SYNTHETIC DATA: not real viewers"; }
.warning { border-left: 4px solid #d08700; background: #fff8e6; padding: 1.5mm 3mm; }
.verdict { border-left: 4px solid #1f78b4; background: #eef5fb; padding: 1.5mm 3mm; }
table { border-collapse: collapse; width: 100%; margin: 1.5mm 0 3mm; font-size: 8.5pt; break-inside: auto; }
th, td { border-bottom: 1px solid #ddd; padding: 1mm 1.5mm; text-align: left; vertical-align: middle; }
th { background: #f3f3f3; font-weight: 600; }
tr { break-inside: avoid; }
td.label { white-space: nowrap; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
table.kv th { width: 30%; background: none; }
table.ab { font-size: 7.8pt; }
table.ab th { vertical-align: bottom; }
figure { margin: 2mm 0 4mm; break-inside: avoid; }
figure img { width: 100%; height: auto; display: block; }
figcaption { font-size: 8pt; color: #555; margin-top: 1mm; }
img.thumb { width: 26mm; height: auto; display: block; border: 1px solid #ccc; }
code { font-family: "DejaVu Sans Mono", monospace; font-size: 8.5pt; }
ul { margin: 1mm 0 2mm; padding-left: 5mm; }
li { margin: 0.6mm 0; }
section { break-inside: auto; }
.page-break { break-before: page; }
"""

TEMPLATE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="Affectline {{ version }} (affectline report)">
<title>{{ 'SYNTHETIC DATA - ' if synthetic }}Audience emotion report: {{ title }}</title>
<style>{{ css }}</style>
</head>
<body>
{% if synthetic %}<div class="synthetic" id="synthetic-notice">SYNTHETIC DATA: generated viewers (affectline demo-data),
not real people. Every figure below demonstrates the product; none describes an audience.</div>{% endif %}
<header>
<h1>Audience emotion report: {{ title }}</h1>
<p class="meta">Video <code>{{ video_id }}</code> &middot; generated {{ generated }} &middot; Affectline {{ version }}
&middot; every figure comes from the AnalyticsService (the same calls as the API and the dashboard).</p>
</header>

<section id="campaign">
<h2>Campaign</h2>
<table class="kv">
<tr><th>Video</th><td>{{ title }} (<code>{{ video_id }}</code>){% if synthetic %} &mdash; <strong>synthetic data</strong>{% endif %}</td></tr>
<tr><th>Variants (viewers, all variants under the filter)</th><td>{% for v in variants %}{{ v.name }}: {{ v.viewers }}{% if v.selected %} (in this report){% endif %}{{ ", " if not loop.last }}{% else %}none{% endfor %}</td></tr>
<tr><th>Filter</th><td>{{ filter_text }}</td></tr>
<tr><th>Viewers in this report</th><td>{{ sessions }} (sessions; each viewer counts once per second)</td></tr>
<tr><th>Viewers per second</th><td>{{ viewers_range }}</td></tr>
<tr><th>Last session</th><td>{{ last_session }}</td></tr>
<tr><th>Suppression floor</th><td>{{ min_viewers }} viewers: seconds, segments and variants with fewer are withheld</td></tr>
</table>
</section>

<section id="headline">
<h2>Headline scores and norms</h2>
<table>
<tr><th>Metric</th><th class="num">Score</th><th class="num">Norm percentile</th><th class="num">Videos in the norm</th><th>What it is</th></tr>
{% for n in headline %}<tr><td class="label">{{ n.label }}</td><td class="num">{{ n.score }}</td><td class="num">{{ n.percentile }}</td><td class="num">{{ n.norm_size }}</td><td class="note">{{ n.about }}</td></tr>
{% else %}<tr><td colspan="5">No headline scores under this filter.</td></tr>{% endfor %}
</table>
<p class="note">Score: the mean over viewers of their session means. Norm percentile: the percent of the
<em>other</em> videos of this server scoring at or below this one (none when no other video has a score;
fewer viewers than the floor give no score).</p>
</section>

<section id="curves">
<h2>Emotion and engagement over video time</h2>
<figure><img src="{{ charts.emotions }}" alt="Mean probability of each emotion per video second, with 95 % confidence bands">
<figcaption>Mean over viewers per second (each viewer counts once); shaded: 95 % t-interval; grey: withheld seconds;
dotted lines: key moments (numbers as in the table below).</figcaption></figure>
<figure><img src="{{ charts.engagement }}" alt="Valence, engagement, attention share and viewers per video second">
<figcaption>Valence = p(happy) &minus; (p(angry) + p(disgust) + p(fear) + p(sad)); engagement = attention &times;
(1 &minus; p(neutral)); attention share: viewers looking roughly at the screen.</figcaption></figure>
{% if suppressed %}<p class="note">{% for s in suppressed %}Seconds {{ s.start_s }}&ndash;{{ s.end_s }} withheld: {{ s.reason }}. {% endfor %}</p>{% endif %}
</section>

<section id="moments">
<h2>Key moments</h2>
{% if moments %}<table>
<tr><th>#</th><th>Frame</th><th>Metric</th><th>Kind</th><th class="num">At</th><th class="num">Span (s)</th><th class="num">Value</th><th class="num">Size</th><th class="num">Viewers</th></tr>
{% for m in moments %}<tr><td>{{ m.number }}</td><td>{% if m.thumb %}<img class="thumb" src="{{ m.thumb }}" alt="Video frame at {{ m.at }}">{% else %}<span class="note">no frame</span>{% endif %}</td>
<td>{{ m.metric }}</td><td>{{ m.kind }}</td><td class="num">{{ m.at }}</td><td class="num">{{ m.span }}</td><td class="num">{{ m.value }}</td><td class="num">{{ m.size }}</td><td class="num">{{ m.viewers }}</td></tr>
{% endfor %}</table>
<p class="note">Peaks and drops of each emotion curve and of engagement with a prominence of at least 0.05 and a
width of at least 2 s (scipy.signal.find_peaks). At: the second of the extreme, frame shown from its middle.
Size: the prominence, in the metric's units. Viewers: behind the extreme (fewest over the span).</p>
{% if not thumbnails %}<p class="note">{{ thumbnail_note }}</p>{% endif %}
{% else %}<p>No key moments under this filter.</p>{% endif %}
</section>

<section id="ab">
<h2>A/B comparison{% if ab %}: variant {{ ab.b }} vs. {{ ab.a }}{% endif %}</h2>
{% if ab %}
{% if ab.suppressed_reason %}<p class="warning">No statistics: {{ ab.suppressed_reason }}.</p>
{% else %}
<p class="verdict">{{ ab.verdict }}</p>
{% if ab.warning %}<p class="warning">Sample size: {{ ab.warning }}</p>{% endif %}
<table class="ab">
<tr><th>Metric</th><th class="num">Viewers<br>{{ ab.a }} / {{ ab.b }}</th><th class="num">Mean<br>{{ ab.a }}</th><th class="num">Mean<br>{{ ab.b }}</th>
<th class="num">Difference<br>[95 % CI]</th><th class="num">Hedges' g</th><th class="num">p Welch<br>(Holm)</th><th class="num">p Mann-Whitney<br>(Holm)</th><th>Reliable</th><th class="num">n needed</th></tr>
{% for r in ab.rows %}<tr><td>{{ r.metric }}</td><td class="num">{{ r.n_a }} / {{ r.n_b }}</td><td class="num">{{ r.mean_a }}</td><td class="num">{{ r.mean_b }}</td>
<td class="num">{{ r.difference }}<br>[{{ r.ci_low }}, {{ r.ci_high }}]</td><td class="num">{{ r.g }}</td><td class="num">{{ r.welch }}</td><td class="num">{{ r.mwu }}</td><td>{{ r.reliable }}</td><td class="num">{{ r.n_needed }}</td></tr>
{% endfor %}</table>
<p class="note">Per-viewer session means, {{ ab.b }} minus {{ ab.a }}. CI: bootstrap (BCa). Reliable: Holm-adjusted Welch
p below 0.05 and a CI excluding 0. n needed: viewers per variant to detect the observed g with power 0.8.</p>
<figure><img src="{{ charts.ab }}" alt="Per-second {{ ab.metric }} of both variants and their difference with a 95 % band">
<figcaption>Per second: each variant's {{ ab.metric }} (95 % CI) and the difference with its Welch 95 % band; grey:
seconds where a variant has fewer viewers than the floor.</figcaption></figure>
{% endif %}
{% else %}<p>{{ ab_note }}</p>{% endif %}
</section>

<section id="segments">
<h2>Segments</h2>
<p class="note">Self-reported demographics (given only under the demographics consent scope); "(none given)" counts
viewers who gave none. Segments below the floor are withheld, with the reason.</p>
{% for s in segments %}<h3>By {{ s.name }}</h3>
<table><tr><th>{{ s.name|capitalize }}</th><th class="num">Viewers</th><th>Shown</th></tr>
{% for row in s.rows %}<tr><td>{{ row.value }}</td><td class="num">{{ row.viewers }}</td><td>{{ row.status }}</td></tr>
{% else %}<tr><td colspan="3">No viewers.</td></tr>{% endfor %}</table>
{% endfor %}
{% if charts.segments %}<figure><img src="{{ charts.segments }}" alt="Engagement per second by segment">
<figcaption>Engagement per second of each segment shown (mean over its viewers).</figcaption></figure>{% endif %}
</section>

<section id="method">
<h2>Method notes</h2>
<p class="note">Definitions: docs/metrics.md in the Affectline repository (quoted briefly here).</p>
<ul>
<li><strong>Per frame</strong>, from the session's smoothed probabilities: valence = p(happy) &minus; (p(angry) +
p(disgust) + p(fear) + p(sad)); expressiveness = 1 &minus; p(neutral); attention = 1 when |yaw| &le; 30&deg; and
|pitch| &le; 20&deg;; engagement = attention &times; expressiveness; sentiment = valence on frames not known to be
inattentive. Frames without a face have no emotion values.</li>
<li><strong>Curves</strong>: a viewer is a session; each viewer's mean of a second counts once. Mean over viewers
with a value; 95 % CI: the t-interval (scipy.stats.ttest_1samp), none for fewer than 2 viewers. Seconds are the
first viewing unless the filter asks for rewatches.</li>
<li><strong>Suppression</strong>: seconds, segments and variants with fewer than {{ min_viewers }} viewers are withheld.</li>
<li><strong>Key moments</strong>: scipy.signal.find_peaks on each unsuppressed stretch of a curve, prominence &ge; 0.05,
width &ge; 2 s at half prominence; drops are peaks of the negated curve.</li>
<li><strong>A/B</strong>: difference of per-viewer means with a bootstrap (BCa, 9,999 resamples, seeded) 95 % CI;
Hedges' g; Welch's t and Mann-Whitney U, each Holm-adjusted across the metrics compared. The verdict never claims
"no difference", only "no reliable difference".</li>
<li><strong>Norms</strong>: scipy.stats.percentileofscore (weak) of the score among the other videos' scores.</li>
</ul>
</section>

<section id="limitations">
<h2>Limitations (from the model card)</h2>
<p class="note">docs/model-card.md in the Affectline repository has the full card and the accuracy figures.</p>
<h3>Intended use</h3>
<p>Measuring the visible facial-expression response of <strong>consenting</strong> participants while they watch media under
test, aggregated over a session or an audience: "this scene drew more smiles than that one". Participants are told what
is measured, agree explicitly, and can stop at any time.</p>
<h3>Not allowed</h3>
<ul>
<li>Emotion recognition in <strong>workplaces and education institutions</strong>: prohibited by the EU AI Act,
Article 5(1)(f) (in force since 2 February 2025), apart from medical or safety reasons, which this model is not built
or validated for.</li>
<li>Decisions about individuals (hiring, credit, insurance, policing, border control, health).</li>
<li>Inferring what someone <em>feels</em>: a smile label is a visible-expression label, not an inner state.</li>
<li>Anyone who has not consented, including bystanders in the camera frame.</li>
</ul>
<h3>Known failure modes</h3>
<ul>
<li>Fear and disgust are the weakest classes: fear is confused with sad and surprise, disgust with angry, and
disgust is rare in the training data.</li>
<li>Label noise: crowd (FER+) votes disagree with the training labels for about 36 % of faces.</li>
<li>Profile views, occlusion (hands, masks), strong backlight, very small faces and unusual framing are out of
distribution; the model always answers with a distribution over the seven classes.</li>
<li>Accuracy per age, gender or skin tone is not measured (the training data has no demographic annotations); the
seven categories and their display are not culture-free. Compare within the same participants across stimuli, not
across people or groups, and never use a score as a measure of a person.</li>
</ul>
</section>
<script type="application/json" id="report-data">{{ data_json }}</script>
</body>
</html>
"""
