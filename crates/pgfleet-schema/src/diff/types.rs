//! Types of our own: enums (labels added in place, or the type swapped when labels are removed or
//! reordered) and domains (altered in place, or swapped when the base type or collation changes).
//! A swap lists the columns of existing tables that use the type ([`crate::change::TypeUse`]).

use std::collections::BTreeSet;

use super::compare::is_subsequence;
use super::differ::Differ;
use crate::change::{Change, CommentTarget, EnumValuePosition};

impl Differ<'_> {
    pub(super) fn enums(&mut self) {
        for name in self.cur.enums.keys() {
            if !self.des.enums.contains_key(name) {
                self.push(Change::DropEnum { name: name.clone() });
            }
        }
        for (name, de) in &self.des.enums {
            let target = CommentTarget::Type(name.clone());
            let Some(ce) = self.cur.enums.get(name) else {
                self.push(Change::AddEnum {
                    name: name.clone(),
                    labels: de.labels.clone(),
                });
                self.comment_new(target, &de.comment);
                continue;
            };
            if ce.labels == de.labels {
                self.comment_diff(target, &ce.comment, &de.comment);
            } else if is_subsequence(&ce.labels, &de.labels) {
                let have: BTreeSet<&String> = ce.labels.iter().collect();
                for (i, label) in de.labels.iter().enumerate() {
                    if have.contains(label) {
                        continue;
                    }
                    let position = if i > 0 {
                        EnumValuePosition::After(de.labels[i - 1].clone())
                    } else if let Some(first) = ce.labels.first() {
                        EnumValuePosition::Before(first.clone())
                    } else {
                        EnumValuePosition::End
                    };
                    self.push(Change::AddEnumValue {
                        name: name.clone(),
                        label: label.clone(),
                        position,
                    });
                }
                self.comment_diff(target, &ce.comment, &de.comment);
            } else {
                let keep: BTreeSet<&String> = de.labels.iter().collect();
                let uses = self.type_uses(&name.to_string());
                self.push(Change::ReplaceEnum {
                    name: name.clone(),
                    labels: de.labels.clone(),
                    removed: ce
                        .labels
                        .iter()
                        .filter(|l| !keep.contains(l))
                        .cloned()
                        .collect(),
                    uses,
                });
                self.comment_new(target, &de.comment);
            }
        }
    }

    pub(super) fn domains(&mut self) {
        for name in self.cur.domains.keys() {
            if !self.des.domains.contains_key(name) {
                self.push(Change::DropDomain { name: name.clone() });
            }
        }
        for (name, dd) in &self.des.domains {
            let target = CommentTarget::Domain(name.clone());
            let Some(cd) = self.cur.domains.get(name) else {
                self.push(Change::AddDomain {
                    name: name.clone(),
                    domain: dd.clone(),
                });
                self.comment_new(target, &dd.comment);
                continue;
            };
            if cd.base_type != dd.base_type || cd.collation != dd.collation {
                let uses = self.type_uses(&name.to_string());
                self.push(Change::ReplaceDomain {
                    name: name.clone(),
                    domain: dd.clone(),
                    uses,
                });
                self.comment_new(target, &dd.comment);
                continue;
            }
            if cd.default != dd.default {
                self.push(Change::AlterDomainDefault {
                    name: name.clone(),
                    default: dd.default.clone(),
                });
            }
            if cd.not_null != dd.not_null {
                self.push(Change::AlterDomainNotNull {
                    name: name.clone(),
                    not_null: dd.not_null,
                });
            }
            for check in cd.checks.keys() {
                if !dd.checks.contains_key(check) {
                    self.push(Change::DropDomainCheck {
                        name: name.clone(),
                        check: check.clone(),
                    });
                }
            }
            for (check, def) in &dd.checks {
                let changed = match cd.checks.get(check) {
                    None => true,
                    Some(cur) if cur != def => {
                        self.push(Change::DropDomainCheck {
                            name: name.clone(),
                            check: check.clone(),
                        });
                        true
                    }
                    Some(_) => false,
                };
                if changed {
                    self.push(Change::AddDomainCheck {
                        name: name.clone(),
                        check: check.clone(),
                        definition: def.clone(),
                    });
                }
            }
            self.comment_diff(target, &cd.comment, &dd.comment);
        }
    }
}
