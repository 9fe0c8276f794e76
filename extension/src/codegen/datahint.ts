// Whether a generated program needs a data set, where it looks for it, and how to run it without
// one. Read from the result: the program's `--data` and `--synthetic` options, its docstring's
// `Data:` line and the intent's data set. No `vscode` import.
import { GenerateResult } from '../protocol';
import { leadingDocstring } from './docstring';

export interface DataNeed {
    /** The data set's name as a user knows it ("MNIST"), when the intent names one. */
    dataset?: string;
    /** Where the program reads it by default (its `--data` default), when it has a real path. */
    path?: string;
    /** The docstring's `Data:` line, which says what files go there. */
    how?: string;
    /** The program runs on random data of the right shapes with `--synthetic`. */
    synthetic: boolean;
}

/** Data sets the programs read from files, by the intent's name. Absent ones need no files. */
const DATASETS: Record<string, string> = {
    mnist: 'MNIST',
    cifar10: 'CIFAR-10',
    imagefolder: 'an image folder',
    csv: 'a CSV file',
    text: 'a TSV of texts and labels',
    series: 'a CSV series',
};

/** The default of `parser.add_argument("--data", default=…)`: a string literal or a module constant's. */
function dataDefault(code: string): string | undefined {
    const m = /add_argument\(\s*["']--data["'][^)]*?\bdefault\s*=\s*(?:"([^"]*)"|'([^']*)'|([A-Za-z_]\w*))/.exec(code);
    if (!m) {
        return undefined;
    }
    if (m[3]) {
        const c = new RegExp(`^${m[3]}\\s*=\\s*(?:"([^"]*)"|'([^']*)')`, 'm').exec(code);
        return c ? (c[1] ?? c[2]) : undefined;
    }
    return m[1] ?? m[2];
}

/** A default that names a place on disk, not a placeholder ("DIR", "(bundled with scikit-learn)"). */
function isPath(value: string | undefined): value is string {
    return !!value && /[./]/.test(value) && !/^\(.*\)$/.test(value) && !/\s/.test(value);
}

/** What the program needs to train on real data, or undefined when it needs no files. */
export function dataNeed(result: Pick<GenerateResult, 'code' | 'intent'>): DataNeed | undefined {
    const code = result.code;
    if (!code || !/add_argument\(\s*["']--data["']/.test(code)) {
        return undefined;
    }
    const name = typeof result.intent?.dataset === 'string' ? result.intent.dataset : undefined;
    if (name !== undefined && !(name in DATASETS)) {
        return undefined; // bundled (scikit-learn's digits) or synthetic by design
    }
    const doc = leadingDocstring(code);
    const how = doc ? /^[ \t]*Data:[ \t]*(.+)$/m.exec(code.slice(doc.start, doc.end))?.[1].trim() : undefined;
    const path = dataDefault(code);
    return {
        dataset: name ? DATASETS[name] : undefined,
        path: isPath(path) ? path : undefined,
        how: how || undefined,
        synthetic: /add_argument\(\s*["']--synthetic["']/.test(code),
    };
}

/** One line for the lens and the notification: where the data goes, and the way to run without it. */
export function dataHint(need: DataNeed): string {
    const what = need.dataset ?? 'its data';
    const where = need.path ? `${what} in ${need.path}` : need.how ? need.how.replace(/\.\s*Nothing is downloaded\.?$/i, '') : `${what} (--data PATH)`;
    const parts = [`needs ${where}, nothing is downloaded`];
    if (need.synthetic) {
        parts.push('or run with --synthetic');
    }
    return parts.join('; ');
}

/** The checks page's section: where the data goes and the commands to run with it or without it. */
export function dataSection(need: DataNeed | undefined, file: string): string[] {
    if (!need) {
        return [];
    }
    const out = ['## Data', '', `This program ${dataHint(need)}.`, ''];
    if (need.how) {
        out.push(`Data: ${need.how}`, '');
    }
    out.push('```sh');
    out.push(`python ${file} --data ${need.path ?? 'PATH'}`);
    if (need.synthetic) {
        out.push(`python ${file} --synthetic --epochs 2   # random data of the right shapes`);
    }
    out.push(`python ${file} --smoke                 # one tiny step on synthetic data`, '```', '');
    return out;
}
