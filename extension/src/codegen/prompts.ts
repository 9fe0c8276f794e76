// Finds comment prompts (`# deepdive: a resnet18 for cifar-10`) in Python source. No `vscode` import.
import { docstringPrompt, samePrompt } from './docstring';

/** One `# deepdive: …` comment: where it is and what it asks for. */
export interface CommentPrompt {
    /** 0-based line number of the comment. */
    line: number;
    /** The comment's indentation (what the generated program is inserted under it with). */
    indent: string;
    /** The prompt, trimmed; never empty. */
    prompt: string;
}

// `#`, optional spaces, `deepdive` in any case, an ASCII or full-width colon, then the prompt.
// Only whole-line comments count: a `# deepdive:` after code is a remark about that code.
const PROMPT_RE = /^([ \t]*)#[ \t]*deepdive[ \t]*[:：](.*)$/i;

/** The prompt of one line, or undefined when the line is not a (non-empty) prompt comment. */
export function parsePromptLine(text: string): { indent: string; prompt: string } | undefined {
    const m = PROMPT_RE.exec(text);
    if (!m) {
        return undefined;
    }
    const prompt = m[2].trim();
    return prompt ? { indent: m[1], prompt } : undefined;
}

/** Every prompt comment of a document's text, top to bottom. */
export function findCommentPrompts(text: string): CommentPrompt[] {
    const out: CommentPrompt[] = [];
    const lines = text.split(/\r?\n/);
    for (let line = 0; line < lines.length; line++) {
        const p = parsePromptLine(lines[line]);
        if (p) {
            out.push({ line, ...p });
        }
    }
    return out;
}

/** How far below its comment an answer's docstring may start (blank lines and comments in between). */
const ANSWER_WINDOW_LINES = 60;

/**
 * True when the prompt on `line` was answered: the code right below the comment (blank lines and
 * comments, such as a shebang, may come first) opens with a docstring whose `Prompt:` line is this
 * prompt, which is what an accepted program inserted under it starts with. Deleting the program, or
 * editing the prompt, brings the comment's Generate lens back.
 */
export function promptAnswered(lines: readonly string[], line: number, prompt: string): boolean {
    const below = lines.slice(line + 1, line + 1 + ANSWER_WINDOW_LINES).join('\n');
    const written = docstringPrompt(below);
    return written !== undefined && samePrompt(written, prompt);
}

/** The prompt comments still to answer: those without an accepted program under them. */
export function findOpenPrompts(text: string): CommentPrompt[] {
    const lines = text.split(/\r?\n/);
    return findCommentPrompts(text).filter((p) => !promptAnswered(lines, p.line, p.prompt));
}
